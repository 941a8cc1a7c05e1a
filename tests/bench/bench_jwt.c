/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JWT verification cost (agent/jwks.c): bench_jwt JWKS_FILE TOKEN_FILE [N].
 * Prints CPU ns per token for a full verification (signature and claims,
 * ws_jwt_verify) and for the agent's path with its verdict cache warm
 * (ws_jwt_verifier_check: SHA-256 of the token and a lookup). Part c of
 * tests/bench/http_bench.sh makes the key sets and tokens with openssl.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jwks.h"

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = malloc(WS_JWKS_MAX_FILE + 1);
	size_t n = 0;

	if (f && buf)
		n = fread(buf, 1, WS_JWKS_MAX_FILE, f);
	if (f)
		fclose(f);
	while (buf && n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	*len = n;
	return buf;
}

static double cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	struct ws_jwt_verifier_cfg vc = {.policy = {.leeway_s = 30},
					 .cache_size = 4096};
	struct ws_jwt_policy pol = {.leeway_s = 30};
	size_t jl, tl;
	char *json, *tok, err[256];
	struct ws_jwt_verifier *v;
	struct ws_jwks *ks;
	unsigned skipped, i, n = argc > 3 ? (unsigned)atoi(argv[3]) : 2000;
	long long now = (long long)time(NULL);
	double t0, cold, hit;

	if (argc < 3) {
		fprintf(stderr, "usage: bench_jwt JWKS_FILE TOKEN_FILE [N]\n");
		return 2;
	}
	json = slurp(argv[1], &jl);
	tok = slurp(argv[2], &tl);
	ks = json ? ws_jwks_parse(json, jl, &skipped, err, sizeof(err)) : NULL;
	v = json ? ws_jwt_verifier_new_text(&vc, json, jl, err, sizeof(err))
		 : NULL;
	if (!tok || !ks || !v ||
	    ws_jwt_verify(ks, &pol, tok, tl, now) != WS_JWT_VERIFIED) {
		fprintf(stderr, "bench_jwt: the token does not verify\n");
		return 1;
	}
	t0 = cpu_ns();
	for (i = 0; i < n; i++)
		if (ws_jwt_verify(ks, &pol, tok, tl, now) != WS_JWT_VERIFIED)
			return 1;
	cold = (cpu_ns() - t0) / n;
	t0 = cpu_ns();
	for (i = 0; i < 50 * n; i++)
		if (ws_jwt_verifier_check(v, tok, tl, now) != WS_JWT_VERIFIED)
			return 1;
	hit = (cpu_ns() - t0) / (50.0 * n);
	printf("verify: %.0f ns/token\ncached: %.0f ns/token\n", cold, hit);
	ws_jwt_verifier_free(v);
	ws_jwks_free(ks);
	free(json);
	free(tok);
	return 0;
}
