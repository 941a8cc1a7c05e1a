// SPDX-License-Identifier: Apache-2.0

// natsjwt makes a NATS operator-mode setup for the credential-rotation test
// without nsc or github.com/nats-io/jwt (not packaged in Debian): nkeys
// (golang-github-nats-io-nkeys-dev) makes the keys and signs JWTs whose
// claims are written here, the v2 format nats-server 2.9 reads.
//
//	natsjwt --dir DIR --users a,b[,...] [--revoke a]
//
// writes DIR/operator.jwt, DIR/account.pub, DIR/account.jwt (with the users
// named by --revoke revoked) and DIR/<user>.creds for each user, and prints
// {"ok":true,"account":"A...","users":{"a":"U...",...}}. Keys are kept in
// DIR/*.nk and reused by a later run, so a second run with --revoke only
// changes account.jwt.
package main

import (
	"crypto/sha512"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
)

func key(dir, name string, create func() (nkeys.KeyPair, error)) nkeys.KeyPair {
	path := filepath.Join(dir, name+".nk")
	if seed, err := os.ReadFile(path); err == nil {
		kp, err := nkeys.FromSeed(seed)
		check(err)
		return kp
	}
	kp, err := create()
	check(err)
	seed, _ := kp.Seed()
	check(os.WriteFile(path, seed, 0600))
	return kp
}

func pub(kp nkeys.KeyPair) string {
	p, err := kp.PublicKey()
	check(err)
	return p
}

// encode signs claims (iss, sub, name and nats set by the caller) as a JWT.
func encode(issuer nkeys.KeyPair, claims map[string]interface{}) string {
	claims["iss"] = pub(issuer)
	claims["iat"] = time.Now().Unix()
	claims["jti"] = ""
	body, err := json.Marshal(claims)
	check(err)
	h := sha512.Sum512_256(body)
	claims["jti"] = base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:])
	body, err = json.Marshal(claims)
	check(err)
	head := base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"JWT","alg":"ed25519-nkey"}`))
	signing := head + "." + base64.RawURLEncoding.EncodeToString(body)
	sig, err := issuer.Sign([]byte(signing))
	check(err)
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func check(err error) {
	if err != nil {
		fmt.Printf("{\"ok\":false,\"error\":%q}\n", err.Error())
		os.Exit(1)
	}
}

func main() {
	dir := flag.String("dir", ".", "output directory")
	users := flag.String("users", "agent", "comma-separated user names")
	revoke := flag.String("revoke", "", "comma-separated users to revoke")
	flag.Parse()

	op := key(*dir, "operator", nkeys.CreateOperator)
	acc := key(*dir, "account", nkeys.CreateAccount)
	opJWT := encode(op, map[string]interface{}{
		"sub": pub(op), "name": "wirespan-test",
		"nats": map[string]interface{}{"type": "operator", "version": 2},
	})
	check(os.WriteFile(filepath.Join(*dir, "operator.jwt"), []byte(opJWT), 0644))

	revs := map[string]int64{}
	out := map[string]string{}
	for _, u := range strings.Split(*users, ",") {
		ukp := key(*dir, "user-"+u, nkeys.CreateUser)
		out[u] = pub(ukp)
		for _, r := range strings.Split(*revoke, ",") {
			if r == u {
				// JWTs of this user issued before now are revoked
				revs[pub(ukp)] = time.Now().Unix() + 1
			}
		}
		uJWT := encode(acc, map[string]interface{}{
			"sub": pub(ukp), "name": u,
			"nats": map[string]interface{}{
				"pub": map[string]interface{}{}, "sub": map[string]interface{}{},
				"subs": -1, "data": -1, "payload": -1,
				"type": "user", "version": 2,
			},
		})
		seed, _ := ukp.Seed()
		creds := fmt.Sprintf("-----BEGIN NATS USER JWT-----\n%s\n------END NATS USER JWT------\n\n"+
			"-----BEGIN USER NKEY SEED-----\n%s\n------END USER NKEY SEED------\n", uJWT, seed)
		check(os.WriteFile(filepath.Join(*dir, u+".creds"), []byte(creds), 0600))
	}
	accNats := map[string]interface{}{
		"limits": map[string]interface{}{
			"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
			"wildcards": true, "conn": -1, "leaf": -1,
			"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
		},
		"default_permissions": map[string]interface{}{"pub": map[string]interface{}{}, "sub": map[string]interface{}{}},
		"type":                "account", "version": 2,
	}
	if len(revs) > 0 {
		accNats["revocations"] = revs
	}
	accJWT := encode(op, map[string]interface{}{"sub": pub(acc), "name": "telemetry", "nats": accNats})
	check(os.WriteFile(filepath.Join(*dir, "account.jwt"), []byte(accJWT), 0644))
	check(os.WriteFile(filepath.Join(*dir, "account.pub"), []byte(pub(acc)), 0644))
	res, _ := json.Marshal(map[string]interface{}{"ok": true, "account": pub(acc), "users": out})
	fmt.Println(string(res))
}
