/* SPDX-License-Identifier: Apache-2.0 */
#include "jsonw.h"
#include "metrics.h"

static const char *const kernel_names[WS_C_MAX] = {WS_COUNTER_NAMES};
static const char *const type_names[WS_EV_TYPE_MAX] = {
	[0] = "none",
	[WS_EV_CONN_OPEN] = "open",
	[WS_EV_CONN_CLOSE] = "close",
	[WS_EV_DATA] = "data",
	[WS_EV_PROC_EXIT] = "proc_exit",
	[WS_EV_GO] = "go",
};

void ws_metrics_print(FILE *f, const uint64_t kernel[WS_C_MAX],
		      const struct ws_map_usage *maps, size_t n_maps,
		      const struct ws_user_metrics *m,
		      const struct ws_conn_table_stats *ct)
{
	struct ws_jsonw w;
	size_t j;
	int i;

	jw_init(&w);
	jw_begin(&w);
	jw_str(&w, "type", "metrics");
	jw_obj_open(&w, "kernel");
	for (i = 0; i < WS_C_MAX; i++)
		jw_u64(&w, kernel_names[i], kernel ? kernel[i] : 0);
	jw_obj_close(&w);
	jw_obj_open(&w, "maps");
	for (j = 0; j < n_maps; j++) {
		jw_obj_open(&w, maps[j].name);
		jw_u64(&w, "entries", maps[j].entries);
		jw_u64(&w, "max_entries", maps[j].max_entries);
		jw_obj_close(&w);
	}
	jw_obj_close(&w);
	jw_obj_open(&w, "user");
	jw_u64(&w, "records", m->records);
	jw_obj_open(&w, "records_by_type");
	for (i = 1; i < WS_EV_TYPE_MAX; i++)
		jw_u64(&w, type_names[i], m->by_type[i]);
	jw_obj_close(&w);
	jw_obj_open(&w, "decode_errors");
	for (i = 1; i < WS_DEC_MAX; i++)
		jw_u64(&w, ws_decode_err_names[i], m->decode_err[i]);
	jw_obj_close(&w);
	jw_u64(&w, "data_bytes", m->data_bytes);
	jw_obj_open(&w, "gap_bytes");
	for (i = 0; i < WS_GAP_REASON_MAX; i++)
		jw_u64(&w, ws_gap_reason_name(i), m->gap_bytes[i]);
	jw_obj_close(&w);
	jw_u64(&w, "dup_bytes", m->dup_bytes);
	jw_u64(&w, "data_without_open", m->data_without_open);
	jw_u64(&w, "close_without_open", m->close_without_open);
	jw_u64(&w, "stale_fd_closed", m->stale_fd_closed);
	jw_u64(&w, "proc_exit_closed", m->proc_exit_closed);
	jw_u64(&w, "swept", m->swept);
	jw_u64(&w, "filtered_proto", m->filtered_proto);
	jw_u64(&w, "unfollowed", m->unfollowed);
	jw_u64(&w, "unfollowed_kernel_miss", m->unfollowed_kernel_miss);
	jw_u64(&w, "output_errors", m->output_errors);
	jw_u64(&w, "holes_released", m->holes_released);
	jw_obj_open(&w, "conns");
	jw_u64(&w, "live", ct->live);
	jw_u64(&w, "inserted", ct->inserted);
	jw_u64(&w, "removed", ct->removed);
	jw_u64(&w, "evicted", ct->evicted);
	jw_u64(&w, "peak", ct->peak);
	jw_u64(&w, "nomem", ct->nomem);
	jw_obj_close(&w);
	jw_obj_close(&w);
	jw_end(&w, f);
	fflush(f);
	jw_free(&w);
}
