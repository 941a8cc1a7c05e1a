/* SPDX-License-Identifier: Apache-2.0 */
#ifndef WIRESPAN_RELAY_CMD_H
#define WIRESPAN_RELAY_CMD_H

/* `wirespan relay`: the telemetry subjects to an OTLP/HTTP backend. */
int cmd_relay(int argc, char **argv);

#endif
