// SPDX-License-Identifier: Apache-2.0

// demo-api: the HTTP service of `make demo` (behind caddy). GET
// /orders/{id} asks the pricing worker over NATS (request-reply on
// demo.price) and answers with what it said. Plain nats.go and net/http:
// nothing in it knows about tracing.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "HTTP address")
	url := flag.String("nats", nats.DefaultURL, "NATS server")
	flag.Parse()

	nc, err := nats.Connect(*url, nats.Name("demo-api"))
	if err != nil {
		log.Fatalf("demo-api: %v", err)
	}
	defer nc.Close()

	http.HandleFunc("/orders/", func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/orders/")
		if id == "" || strings.Contains(id, "/") {
			http.NotFound(w, r)
			return
		}
		msg, err := nc.Request("demo.price", []byte(id), 2*time.Second)
		if err != nil {
			http.Error(w, "pricing: "+err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"order\":%q,\"price\":%s}\n", id, msg.Data)
	})
	log.Printf("demo-api: listening on %s, NATS %s", *listen, *url)
	log.Fatal(http.ListenAndServe(*listen, nil))
}
