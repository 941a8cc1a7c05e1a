/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdbool.h>

#include "export/pb_guard.h"

/* Reads a varint at *p (< end); false if cut or longer than 10 bytes. */
static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t x = 0;
	unsigned shift;

	for (shift = 0; shift < 70 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;

		x |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = x;
			return true;
		}
	}
	return false;
}

/* Recursion is bounded by max_depth (a few hundred bytes of stack each). */
static int check(const ProtobufCMessageDescriptor *desc, const uint8_t *p,
		 const uint8_t *end, unsigned depth)
{
	if (!depth)
		return -EBADMSG;
	while (p < end) {
		const ProtobufCFieldDescriptor *f;
		uint64_t key, len;

		if (!varint(&p, end, &key) || key >> 3 == 0 ||
		    key >> 3 > UINT32_MAX)
			return -EBADMSG;
		switch (key & 7) {
		case 0: /* varint */
			if (!varint(&p, end, &len))
				return -EBADMSG;
			break;
		case 1: /* 64-bit */
			if (end - p < 8)
				return -EBADMSG;
			p += 8;
			break;
		case 5: /* 32-bit */
			if (end - p < 4)
				return -EBADMSG;
			p += 4;
			break;
		case 2: /* length-delimited */
			if (!varint(&p, end, &len) || len > (uint64_t)(end - p))
				return -EBADMSG;
			f = desc ? protobuf_c_message_descriptor_get_field(
					   desc, (unsigned)(key >> 3))
				 : NULL;
			if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
			    check(f->descriptor, p, p + len, depth - 1))
				return -EBADMSG;
			p += len;
			break;
		default: /* groups (3, 4): protobuf-c does not take them */
			return -EBADMSG;
		}
	}
	return 0;
}

int ws_pb_check(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
		size_t len, unsigned max_depth)
{
	if (!buf && len)
		return -EINVAL;
	if (!len)
		return 0;
	return check(desc, buf, buf + len, max_depth);
}

int ws_pb_count(const uint8_t *buf, size_t len, const uint32_t *path,
		size_t depth, size_t *count)
{
	const uint8_t *p = buf, *end = buf + len;

	if (!depth)
		return -EINVAL;
	while (p < end) {
		uint64_t key, v;

		if (!varint(&p, end, &key))
			return -EBADMSG;
		switch (key & 7) {
		case 0:
			if (!varint(&p, end, &v))
				return -EBADMSG;
			break;
		case 1:
		case 5:
			v = (key & 7) == 1 ? 8 : 4;
			if ((uint64_t)(end - p) < v)
				return -EBADMSG;
			p += v;
			break;
		case 2:
			if (!varint(&p, end, &v) || v > (uint64_t)(end - p))
				return -EBADMSG;
			if (key >> 3 == path[0]) {
				if (depth == 1)
					(*count)++;
				else if (ws_pb_count(p, (size_t)v, path + 1,
						     depth - 1, count))
					return -EBADMSG;
			}
			p += v;
			break;
		default:
			return -EBADMSG;
		}
	}
	return 0;
}
