/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Decoder for ring-buffer records (include/wirespan/abi.h). Pure: validates a
 * record and points into it; never trusts a size field it has not checked.
 */
#ifndef WIRESPAN_EVENTS_H
#define WIRESPAN_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "wirespan/abi.h"

struct ws_event {
	uint16_t type; /* enum ws_event_type */
	const struct ws_event_hdr *hdr;
	union {
		const struct ws_conn_open *open;
		const struct ws_conn_close *close;
		const struct ws_data *data;
		const struct ws_proc_exit *exit;
		const struct ws_go_event *go;
	};
	const uint8_t *payload; /* WS_EV_DATA: cap_len bytes */
};

/* Why a record was rejected; index into ws_decode_err_names. */
enum ws_decode_err {
	WS_DEC_OK = 0,
	WS_DEC_SHORT,	  /* shorter than its header or its type's struct */
	WS_DEC_VERSION,	  /* ABI version mismatch */
	WS_DEC_SIZE,	  /* header size disagrees with the record */
	WS_DEC_UNKNOWN,	  /* unknown type (newer kernel side?) */
	WS_DEC_BAD_FIELD, /* a field out of range */
	WS_DEC_MAX,
};

extern const char *const ws_decode_err_names[WS_DEC_MAX];

/* Decode buf[0..len). Returns WS_DEC_OK and fills ev, or a WS_DEC_* reason. */
enum ws_decode_err ws_event_decode(const void *buf, size_t len,
				   struct ws_event *ev);

#endif
