/* SPDX-License-Identifier: Apache-2.0 */
#ifndef WIRESPAN_TAIL_CMD_H
#define WIRESPAN_TAIL_CMD_H

/* `wirespan tail`: print the traces published on the telemetry subjects. */
int cmd_tail(int argc, char **argv);

#endif
