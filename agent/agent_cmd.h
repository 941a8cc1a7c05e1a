/* SPDX-License-Identifier: Apache-2.0 */
/* `wirespan agent`: capture -> parsers -> spans -> output. */
#ifndef WIRESPAN_AGENT_CMD_H
#define WIRESPAN_AGENT_CMD_H

int cmd_agent(int argc, char **argv);

#endif
