// SPDX-License-Identifier: Apache-2.0

// natsrole is a nats.go test peer for the `wirespan agent` integration tests:
// one process plays one role of a NATS conversation, so the spans of each end
// come from a different pid.
//
//	--mode pub       publish --count messages to --subject (optionally with
//	                 --header K:V and/or --traceparent, one per message;
//	                 --interval D: flush and pause D after each message)
//	--mode sub       subscribe to --subject (--queue Q), print a ready line,
//	                 receive --count messages (or until --stop-file exists)
//	--mode reply     answer requests on --subject until --count were served
//	                 (or --stop-file exists)
//	--mode req       --count requests to --subject (--old-style: one inbox
//	                 per request); --expect no_responders: one request that
//	                 must fail with "no responders"
//	--mode js        JetStream: create --stream on --subject, publish --count
//	                 messages, pull them one by one with a durable consumer,
//	                 ack each, nak the one with stream sequence --nak-seq
//	                 once and ack its redelivery
//	--linger D       stay connected D (e.g. 1s) before closing
//	--mode nkeygen   create a user nkey pair: --seed-out FILE gets the seed,
//	                 the public key is printed
//
// Credentials never come from the command line (process arguments are visible
// to every local observer): --user-env reads NATS_TEST_USER/NATS_TEST_PASS,
// --token-env reads NATS_TEST_TOKEN, --nkey-seed FILE reads a seed file.
//
// Payload byte j of message k is (k*131 + j) & 0xff, as in every peer.
// Prints a {"ready":true} line once subscribed (sub, reply), then one JSON
// result line.
//
// Build (offline): GO111MODULE=off GOPATH=/usr/share/gocode go build -o natsrole-go natsrole.go
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

func payload(k, size int) []byte {
	p := make([]byte, size)
	for j := 0; j < size; j++ {
		p[j] = byte((k*131 + j) & 0xff)
	}
	return p
}

type jsDelivery struct {
	StreamSeq uint64 `json:"stream_seq"`
	Delivered uint64 `json:"delivered"`
	Action    string `json:"action"`
	Reply     string `json:"reply"`
}

type result struct {
	Peer        string       `json:"peer"`
	Mode        string       `json:"mode"`
	Pid         int          `json:"pid"`
	Subject     string       `json:"subject"`
	Count       int          `json:"count"`
	Published   int          `json:"published"`
	Received    int          `json:"received"`
	Served      int          `json:"served"`
	Requests    int          `json:"requests"`
	Replies     int          `json:"replies"`
	Inboxes     []string     `json:"inboxes,omitempty"`
	Traceparent []string     `json:"traceparents,omitempty"`
	Match       bool         `json:"match"`
	ClientID    uint64       `json:"client_id"`
	Nkey        string       `json:"nkey,omitempty"`
	Sigs        []string     `json:"sigs,omitempty"`
	Nonces      []string     `json:"nonces,omitempty"`
	JSPubSeqs   []uint64     `json:"js_pub_seqs,omitempty"`
	JSStream    string       `json:"js_stream,omitempty"`
	JSDeliv     []jsDelivery `json:"js_deliveries,omitempty"`
	Error       string       `json:"error,omitempty"`
	OK          bool         `json:"ok"`
}

var (
	outMu sync.Mutex
	r     = &result{Peer: "go"}
)

func emit(v interface{}) {
	b, _ := json.Marshal(v)
	outMu.Lock()
	fmt.Println(string(b))
	outMu.Unlock()
}

func finish(err error) {
	if err != nil {
		r.OK = false
		r.Error = err.Error()
	} else {
		r.OK = true
	}
	emit(r)
	if !r.OK {
		os.Exit(1)
	}
	os.Exit(0)
}

func exists(path string) bool {
	if path == "" {
		return false
	}
	_, err := os.Stat(path)
	return err == nil
}

func main() {
	url := flag.String("url", "nats://127.0.0.1:4222", "server URL")
	mode := flag.String("mode", "", "pub|sub|reply|req|js|nkeygen")
	subject := flag.String("subject", "wirespan.agent", "subject")
	queue := flag.String("queue", "", "queue group (sub, reply)")
	count := flag.Int("count", 10, "messages / requests")
	size := flag.Int("size", 64, "payload bytes")
	header := flag.String("header", "", "K:V header on every published message (HPUB)")
	traceparent := flag.Bool("traceparent", false, "a traceparent header per message: 00-<trace k>-<span k>-01")
	oldStyle := flag.Bool("old-style", false, "old request style (one _INBOX.<nuid> subscription per request)")
	expect := flag.String("expect", "", "req: no_responders")
	stopFile := flag.String("stop-file", "", "sub/reply: stop when this file exists")
	timeout := flag.Duration("timeout", 20*time.Second, "overall timeout")
	name := flag.String("name", "wirespan-role-go", "client name in CONNECT")
	userEnv := flag.Bool("user-env", false, "user/password from NATS_TEST_USER/NATS_TEST_PASS")
	tokenEnv := flag.Bool("token-env", false, "token from NATS_TEST_TOKEN")
	nkeySeed := flag.String("nkey-seed", "", "nkey seed file")
	seedOut := flag.String("seed-out", "", "nkeygen: write the seed here")
	stream := flag.String("stream", "WSORDERS", "js: stream name")
	durable := flag.String("durable", "worker", "js: durable pull consumer")
	nakSeq := flag.Uint64("nak-seq", 0, "js: nak this stream sequence once")
	linger := flag.Duration("linger", 0, "stay connected this long before closing")
	interval := flag.Duration("interval", 0, "pub: flush and wait this long after each message")
	flag.Parse()

	r.Mode, r.Pid, r.Subject, r.Count = *mode, os.Getpid(), *subject, *count

	if *mode == "nkeygen" {
		kp, err := nkeys.CreateUser()
		if err != nil {
			finish(err)
		}
		seed, _ := kp.Seed()
		pub, _ := kp.PublicKey()
		if err := os.WriteFile(*seedOut, append(seed, '\n'), 0600); err != nil {
			finish(err)
		}
		r.Nkey = pub
		finish(nil)
	}

	opts := []nats.Option{nats.Name(*name), nats.Timeout(*timeout), nats.NoReconnect()}
	if *oldStyle {
		opts = append(opts, nats.UseOldRequestStyle())
	}
	if *userEnv {
		opts = append(opts, nats.UserInfo(os.Getenv("NATS_TEST_USER"), os.Getenv("NATS_TEST_PASS")))
	}
	if *tokenEnv {
		opts = append(opts, nats.Token(os.Getenv("NATS_TEST_TOKEN")))
	}
	if *nkeySeed != "" {
		raw, err := os.ReadFile(*nkeySeed)
		if err != nil {
			finish(err)
		}
		kp, err := nkeys.FromSeed(bytes.TrimSpace(raw))
		if err != nil {
			finish(fmt.Errorf("seed: %w", err))
		}
		pub, _ := kp.PublicKey()
		r.Nkey = pub
		// What nats.NkeyOptionFromSeed does, recording the signature so the
		// test can look for it in the agent's output.
		opts = append(opts, nats.Nkey(pub, func(nonce []byte) ([]byte, error) {
			sig, err := kp.Sign(nonce)
			if err == nil {
				r.Nonces = append(r.Nonces, string(nonce))
				r.Sigs = append(r.Sigs, base64.RawURLEncoding.EncodeToString(sig))
			}
			return sig, err
		}))
	}

	nc, err := nats.Connect(*url, opts...)
	if err != nil {
		finish(fmt.Errorf("connect: %w", err))
	}
	defer nc.Close()
	if cid, err := nc.GetClientID(); err == nil {
		r.ClientID = cid
	}
	deadline := time.Now().Add(*timeout)

	switch *mode {
	case "pub":
		for k := 0; k < *count; k++ {
			m := nats.NewMsg(*subject)
			m.Data = payload(k, *size)
			if *header != "" {
				kv := strings.SplitN(*header, ":", 2)
				m.Header.Set(kv[0], strings.TrimSpace(kv[1]))
			}
			if *traceparent {
				tp := fmt.Sprintf("00-%032x-%016x-01", 0x5eed0000+k+1, 0xbeef0000+k+1)
				m.Header.Set("traceparent", tp)
				r.Traceparent = append(r.Traceparent, tp)
			}
			if err := nc.PublishMsg(m); err != nil {
				finish(fmt.Errorf("publish %d: %w", k, err))
			}
			r.Published++
			if *interval > 0 {
				if err := nc.FlushTimeout(*timeout); err != nil {
					finish(fmt.Errorf("flush: %w", err))
				}
				time.Sleep(*interval)
			}
		}
		if err := nc.FlushTimeout(*timeout); err != nil {
			finish(fmt.Errorf("flush: %w", err))
		}

	case "sub":
		var sub *nats.Subscription
		if *queue != "" {
			sub, err = nc.QueueSubscribeSync(*subject, *queue)
		} else {
			sub, err = nc.SubscribeSync(*subject)
		}
		if err != nil {
			finish(fmt.Errorf("subscribe: %w", err))
		}
		_ = sub.SetPendingLimits(-1, -1)
		if err := nc.FlushTimeout(*timeout); err != nil {
			finish(fmt.Errorf("flush: %w", err))
		}
		emit(map[string]interface{}{"ready": true, "pid": os.Getpid()})
		r.Match = true
		for r.Received < *count && time.Now().Before(deadline) {
			m, err := sub.NextMsg(50 * time.Millisecond)
			if err == nats.ErrTimeout {
				if exists(*stopFile) {
					break
				}
				continue
			}
			if err != nil {
				finish(fmt.Errorf("receive: %w", err))
			}
			r.Received++
			if len(m.Data) != *size {
				r.Match = false
			}
		}
		if *stopFile == "" && r.Received < *count {
			finish(fmt.Errorf("received %d of %d", r.Received, *count))
		}

	case "reply":
		var mu sync.Mutex
		done := make(chan struct{})
		cb := func(m *nats.Msg) {
			_ = m.Respond(append([]byte("reply:"), m.Data...))
			mu.Lock()
			r.Served++
			if r.Served == *count {
				close(done)
			}
			mu.Unlock()
		}
		if *queue != "" {
			_, err = nc.QueueSubscribe(*subject, *queue, cb)
		} else {
			_, err = nc.Subscribe(*subject, cb)
		}
		if err != nil {
			finish(fmt.Errorf("subscribe: %w", err))
		}
		if err := nc.FlushTimeout(*timeout); err != nil {
			finish(fmt.Errorf("flush: %w", err))
		}
		emit(map[string]interface{}{"ready": true, "pid": os.Getpid()})
	wait:
		for time.Now().Before(deadline) {
			select {
			case <-done:
				break wait
			case <-time.After(50 * time.Millisecond):
				if exists(*stopFile) {
					break wait
				}
			}
		}
		_ = nc.FlushTimeout(*timeout)
		mu.Lock()
		served := r.Served
		mu.Unlock()
		if *stopFile == "" && served < *count {
			finish(fmt.Errorf("served %d of %d", served, *count))
		}

	case "req":
		if *expect == "no_responders" {
			r.Requests++
			_, err := nc.Request(*subject, []byte("anyone?"), 5*time.Second)
			if !errors.Is(err, nats.ErrNoResponders) {
				finish(fmt.Errorf("expected no responders, got %v", err))
			}
			break
		}
		r.Match = true
		for k := 0; k < *count; k++ {
			p := payload(k, *size)
			r.Requests++
			m, err := nc.Request(*subject, p, 10*time.Second)
			if err != nil {
				finish(fmt.Errorf("request %d: %w", k, err))
			}
			r.Replies++
			if !bytes.Equal(m.Data, append([]byte("reply:"), p...)) {
				r.Match = false
			}
		}
		if !r.Match {
			finish(fmt.Errorf("bad reply"))
		}

	case "js":
		runJS(nc, *subject, *stream, *durable, *count, *size, *nakSeq, *timeout)

	default:
		finish(fmt.Errorf("unknown --mode %q", *mode))
	}

	if err := nc.FlushTimeout(*timeout); err != nil {
		finish(fmt.Errorf("final flush: %w", err))
	}
	time.Sleep(*linger)
	nc.Close()
	finish(nil)
}

func runJS(nc *nats.Conn, subject, stream, durable string, count, size int, nakSeq uint64, timeout time.Duration) {
	js, err := nc.JetStream(nats.MaxWait(timeout))
	if err != nil {
		finish(fmt.Errorf("jetstream: %w", err))
	}
	r.JSStream = stream
	if _, err := js.AddStream(&nats.StreamConfig{Name: stream, Subjects: []string{subject}, Storage: nats.FileStorage}); err != nil {
		finish(fmt.Errorf("add stream: %w", err))
	}
	for k := 0; k < count; k++ {
		ack, err := js.Publish(subject, payload(k, size))
		if err != nil {
			finish(fmt.Errorf("js publish %d: %w", k, err))
		}
		r.Published++
		r.JSPubSeqs = append(r.JSPubSeqs, ack.Sequence)
	}
	sub, err := js.PullSubscribe(subject, durable, nats.BindStream(stream), nats.AckExplicit())
	if err != nil {
		finish(fmt.Errorf("pull subscribe: %w", err))
	}
	acked := map[uint64]bool{}
	naked := false
	// One message per Fetch: each pull request ends at its delivery.
	for i := 0; i < 2*count+2 && len(acked) < count; i++ {
		msgs, err := sub.Fetch(1, nats.MaxWait(5*time.Second))
		if err != nil {
			finish(fmt.Errorf("fetch %d: %w", i, err))
		}
		for _, m := range msgs {
			md, err := m.Metadata()
			if err != nil {
				finish(fmt.Errorf("metadata: %w", err))
			}
			d := jsDelivery{StreamSeq: md.Sequence.Stream, Delivered: md.NumDelivered, Reply: m.Reply}
			if md.Sequence.Stream == nakSeq && !naked {
				naked = true
				d.Action = "nak"
				err = m.Nak()
			} else {
				d.Action = "ack"
				acked[md.Sequence.Stream] = true
				err = m.Ack()
			}
			if err != nil {
				finish(fmt.Errorf("%s: %w", d.Action, err))
			}
			r.Received++
			r.JSDeliv = append(r.JSDeliv, d)
			// The ack is on the wire before the next pull.
			if err := nc.FlushTimeout(timeout); err != nil {
				finish(fmt.Errorf("flush: %w", err))
			}
		}
	}
	if len(acked) < count {
		finish(fmt.Errorf("acked %d of %d", len(acked), count))
	}
}
