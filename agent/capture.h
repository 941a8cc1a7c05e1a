/* SPDX-License-Identifier: Apache-2.0 */
/* `wirespan capture`: the kernel's byte streams as JSON lines. */
#ifndef WIRESPAN_CAPTURE_H
#define WIRESPAN_CAPTURE_H

int cmd_capture(int argc, char **argv);

#endif
