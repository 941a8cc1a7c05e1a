// SPDX-License-Identifier: Apache-2.0

// demo-worker: the pricing worker of `make demo`. It answers requests on
// demo.price (queue group "pricing") and, before replying, publishes a
// demo.priced event for whoever listens (the Node notifier).
package main

import (
	"flag"
	"fmt"
	"hash/fnv"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"
)

func main() {
	url := flag.String("nats", nats.DefaultURL, "NATS server")
	flag.Parse()

	nc, err := nats.Connect(*url, nats.Name("demo-worker"))
	if err != nil {
		log.Fatalf("demo-worker: %v", err)
	}
	defer nc.Close()

	_, err = nc.QueueSubscribe("demo.price", "pricing", func(m *nats.Msg) {
		h := fnv.New32a()
		h.Write(m.Data)
		cents := 100 + h.Sum32()%9900
		price := fmt.Sprintf("%d.%02d", cents/100, cents%100)
		event := fmt.Sprintf("{\"order\":%q,\"price\":%s}", m.Data, price)
		if err := nc.Publish("demo.priced", []byte(event)); err != nil {
			log.Printf("demo-worker: publish: %v", err)
		}
		if err := m.Respond([]byte(price)); err != nil {
			log.Printf("demo-worker: respond: %v", err)
		}
	})
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		log.Fatalf("demo-worker: %v", err)
	}
	log.Printf("demo-worker: answering demo.price on %s", *url)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
}
