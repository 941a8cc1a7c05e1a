/* SPDX-License-Identifier: Apache-2.0 */
/* cppcheck does not read system headers; these give it the shape of the
 * uthash/utlist iteration macros so it can follow the loops. */
#define HASH_ITER(hh, head, el, tmp)                                   \
	for ((el) = (head), (tmp) = (el) ? (el)->hh.next : NULL; (el); \
	     (el) = (tmp), (tmp) = (el) ? (el)->hh.next : NULL)
#define DL_FOREACH2(head, el, next) for ((el) = (head); (el); (el) = (el)->next)
#define DL_FOREACH_SAFE2(head, el, tmp, next) \
	for ((el) = (head); (el) && ((tmp) = (el)->next, 1); (el) = (tmp))
#define DL_FOREACH(head, el) DL_FOREACH2(head, el, next)
#define DL_FOREACH_SAFE(head, el, tmp) DL_FOREACH_SAFE2(head, el, tmp, next)
