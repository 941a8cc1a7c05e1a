/* SPDX-License-Identifier: Apache-2.0 */
/* The `--output stdout` sink: OTLP/JSON lines, for debugging and tests. */
#include <errno.h>
#include <stdlib.h>

#include "otlp_json.h"
#include "sink.h"

struct stdout_sink {
	FILE *out;
	unsigned cap, n;
	uint64_t spans_out, write_errors;
	struct ws_span *batch[];
};

static void flush(struct stdout_sink *o)
{
	unsigned i;

	if (!o->n)
		return;
	if (ws_otlp_json_write(o->out, o->batch, o->n))
		o->write_errors += o->n;
	else
		o->spans_out += o->n;
	for (i = 0; i < o->n; i++)
		ws_span_free(o->batch[i]);
	o->n = 0;
	fflush(o->out);
}

static void stdout_span(void *impl, struct ws_span *s)
{
	struct stdout_sink *o = impl;

	o->batch[o->n++] = s;
	if (o->n == o->cap)
		flush(o);
}

/* Each poll round: a line is never older than the poll interval. */
static void stdout_tick(void *impl, uint64_t mono_ns)
{
	flush(impl);
}

static void stdout_counts(void *impl, uint64_t *spans_out, uint64_t *errors)
{
	struct stdout_sink *o = impl;

	*spans_out = o->spans_out;
	*errors = o->write_errors;
}

static void stdout_drain(void *impl)
{
	flush(impl);
}

static void stdout_close(void *impl)
{
	flush(impl);
	free(impl);
}

static const struct ws_sink_ops stdout_ops = {
	.span = stdout_span,
	.tick = stdout_tick,
	.counts = stdout_counts,
	.drain = stdout_drain,
	.close = stdout_close,
};

int ws_stdout_sink_open(struct ws_sink *sink, FILE *f, unsigned batch)
{
	struct stdout_sink *o;

	if (!batch)
		batch = 1;
	o = calloc(1, sizeof(*o) + batch * sizeof(o->batch[0]));
	if (!o)
		return -ENOMEM;
	o->out = f;
	o->cap = batch;
	sink->ops = &stdout_ops;
	sink->impl = o;
	return 0;
}
