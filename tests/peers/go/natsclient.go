// SPDX-License-Identifier: Apache-2.0

// natsclient is a deterministic nats.go test peer for the wirespan integration
// tests. It connects, subscribes to SUBJECT and SUBJECT.req (a responder),
// publishes COUNT messages of SIZE bytes, flushes, receives them back, makes
// one request to SUBJECT.req, and prints one JSON line describing what it did.
//
// Payload byte j of message k is (k*131 + j) & 0xff (the same pattern in every
// peer), so payloads contain CR, LF, NUL and high bytes.
//
// Build (offline): GO111MODULE=off GOPATH=/usr/share/gocode go build -o natsclient natsclient.go
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
)

func payload(k, size int) []byte {
	p := make([]byte, size)
	for j := 0; j < size; j++ {
		p[j] = byte((k*131 + j) & 0xff)
	}
	return p
}

type result struct {
	Peer           string `json:"peer"`
	Pid            int    `json:"pid"`
	URL            string `json:"url"`
	Subject        string `json:"subject"`
	Count          int    `json:"count"`
	Size           int    `json:"size"`
	Headers        bool   `json:"headers"`
	Published      int    `json:"published"`
	Received       int    `json:"received"`
	PubSha256      string `json:"pub_sha256"`
	RecvSha256     string `json:"recv_sha256"`
	Match          bool   `json:"match"`
	RequestSubject string `json:"request_subject"`
	RequestSha256  string `json:"request_sha256"`
	ReplySha256    string `json:"reply_sha256"`
	ReplyOK        bool   `json:"reply_ok"`
	HeldMs         int64  `json:"held_ms"`
	OK             bool   `json:"ok"`
	Error          string `json:"error,omitempty"`
}

func finish(r *result, err error) {
	if err != nil {
		r.OK = false
		r.Error = err.Error()
	}
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
	if !r.OK {
		os.Exit(1)
	}
	os.Exit(0)
}

func waitFile(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("hold file %s did not appear within %s", path, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func main() {
	url := flag.String("url", "nats://127.0.0.1:4222", "server URL")
	count := flag.Int("count", 10, "messages to publish")
	size := flag.Int("size", 128, "payload bytes per message")
	subject := flag.String("subject", "wirespan.test", "subject")
	holdFile := flag.String("hold-file", "", "connect, then wait until this file exists before doing anything else")
	holdTimeout := flag.Duration("hold-timeout", 60*time.Second, "how long to wait for --hold-file")
	timeout := flag.Duration("timeout", 20*time.Second, "per-operation timeout")
	headers := flag.Bool("headers", false, "publish with headers (HPUB) carrying a traceparent")
	flag.Parse()
	if flag.NArg() > 0 {
		*url = flag.Arg(0)
	}

	r := &result{Peer: "go", Pid: os.Getpid(), URL: *url, Subject: *subject, Count: *count, Size: *size,
		Headers: *headers, RequestSubject: *subject + ".req"}

	nc, err := nats.Connect(*url, nats.Name("wirespan-peer-go"), nats.Timeout(*timeout), nats.NoReconnect())
	if err != nil {
		finish(r, fmt.Errorf("connect: %w", err))
	}
	defer nc.Close()

	if *holdFile != "" {
		fmt.Fprintf(os.Stderr, "connected %s; holding until %s exists\n", nc.ConnectedAddr(), *holdFile)
		t0 := time.Now()
		if err := waitFile(*holdFile, *holdTimeout); err != nil {
			finish(r, err)
		}
		r.HeldMs = time.Since(t0).Milliseconds()
	}

	sub, err := nc.SubscribeSync(*subject)
	if err != nil {
		finish(r, fmt.Errorf("subscribe: %w", err))
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		finish(r, fmt.Errorf("pending limits: %w", err))
	}
	_, err = nc.Subscribe(r.RequestSubject, func(m *nats.Msg) {
		_ = m.Respond(append([]byte("reply:"), m.Data...))
	})
	if err != nil {
		finish(r, fmt.Errorf("subscribe responder: %w", err))
	}
	if err := nc.FlushTimeout(*timeout); err != nil {
		finish(r, fmt.Errorf("flush: %w", err))
	}

	ph := sha256.New()
	for k := 0; k < *count; k++ {
		p := payload(k, *size)
		ph.Write(p)
		if *headers {
			m := nats.NewMsg(*subject)
			m.Header.Set("traceparent", fmt.Sprintf("00-%032x-%016x-01", k+1, k+1))
			m.Data = p
			err = nc.PublishMsg(m)
		} else {
			err = nc.Publish(*subject, p)
		}
		if err != nil {
			finish(r, fmt.Errorf("publish %d: %w", k, err))
		}
		r.Published++
	}
	r.PubSha256 = hex.EncodeToString(ph.Sum(nil))
	if err := nc.FlushTimeout(*timeout); err != nil {
		finish(r, fmt.Errorf("flush: %w", err))
	}

	rh := sha256.New()
	r.Match = true
	for k := 0; k < *count; k++ {
		m, err := sub.NextMsg(*timeout)
		if err != nil {
			finish(r, fmt.Errorf("receive %d: %w", k, err))
		}
		rh.Write(m.Data)
		if !bytes.Equal(m.Data, payload(k, *size)) {
			r.Match = false
		}
		r.Received++
	}
	r.RecvSha256 = hex.EncodeToString(rh.Sum(nil))

	req := []byte("request:" + *subject)
	reqSum := sha256.Sum256(req)
	r.RequestSha256 = hex.EncodeToString(reqSum[:])
	reply, err := nc.Request(r.RequestSubject, req, *timeout)
	if err != nil {
		finish(r, fmt.Errorf("request: %w", err))
	}
	repSum := sha256.Sum256(reply.Data)
	r.ReplySha256 = hex.EncodeToString(repSum[:])
	r.ReplyOK = bytes.Equal(reply.Data, append([]byte("reply:"), req...))

	if err := nc.FlushTimeout(*timeout); err != nil {
		finish(r, fmt.Errorf("final flush: %w", err))
	}
	nc.Close()
	r.OK = r.Match && r.ReplyOK && r.Published == *count && r.Received == *count
	if !r.OK {
		finish(r, fmt.Errorf("payload mismatch or bad reply"))
	}
	finish(r, nil)
}
