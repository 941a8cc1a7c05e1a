/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "events.h"

const char *const ws_decode_err_names[WS_DEC_MAX] = {
	"ok", "short", "version", "size", "unknown_type", "bad_field",
};

/* Minimum size of each record type; 0 = unknown. Append-only like the types. */
static const size_t type_size[WS_EV_TYPE_MAX] = {
	[WS_EV_CONN_OPEN] = sizeof(struct ws_conn_open),
	[WS_EV_CONN_CLOSE] = sizeof(struct ws_conn_close),
	[WS_EV_DATA] = sizeof(struct ws_data),
	[WS_EV_PROC_EXIT] = sizeof(struct ws_proc_exit),
	[WS_EV_GO] = sizeof(struct ws_go_event),
};

enum ws_decode_err ws_event_decode(const void *buf, size_t len,
				   struct ws_event *ev)
{
	const struct ws_event_hdr *h = buf;

	memset(ev, 0, sizeof(*ev));
	if (!buf || len < sizeof(*h))
		return WS_DEC_SHORT;
	if (h->abi_version != WS_ABI_VERSION)
		return WS_DEC_VERSION;
	if (h->type == 0 || h->type >= WS_EV_TYPE_MAX || !type_size[h->type])
		return WS_DEC_UNKNOWN;
	if (h->size > len || h->size < type_size[h->type])
		return h->size > len ? WS_DEC_SIZE : WS_DEC_SHORT;
	ev->type = h->type;
	ev->hdr = h;
	switch (h->type) {
	case WS_EV_CONN_OPEN:
		ev->open = buf;
		if (ev->open->role > WS_ROLE_SERVER)
			return WS_DEC_BAD_FIELD;
		break;
	case WS_EV_CONN_CLOSE:
		ev->close = buf;
		break;
	case WS_EV_DATA:
		ev->data = buf;
		if (ev->data->dir > WS_DIR_INGRESS ||
		    ev->data->cap_len > ev->data->syscall_len ||
		    ev->data->cap_len > WS_MAX_CAPTURE)
			return WS_DEC_BAD_FIELD;
		if ((size_t)h->size !=
		    sizeof(struct ws_data) + ev->data->cap_len)
			return WS_DEC_SIZE;
		ev->payload = (const uint8_t *)buf + sizeof(struct ws_data);
		break;
	case WS_EV_PROC_EXIT:
		ev->exit = buf;
		break;
	case WS_EV_GO:
		ev->go = buf;
		if (ev->go->version != WS_GO_EV_VERSION)
			return WS_DEC_BAD_FIELD;
		break;
	}
	return WS_DEC_OK;
}
