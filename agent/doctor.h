/* SPDX-License-Identifier: Apache-2.0 */
#ifndef WIRESPAN_DOCTOR_H
#define WIRESPAN_DOCTOR_H

/* `wirespan doctor`: host checks with PASS/WARN/FAIL lines. */
int cmd_doctor(int argc, char **argv);

#endif
