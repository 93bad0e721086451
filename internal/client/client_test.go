package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestFailsOverToTheNextNode(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + l.Addr().String()
	l.Close() // nothing listens there now
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"chain_id":"imi-x-1","height":7}`))
	}))
	defer live.Close()
	c, err := New(dead + "," + live.URL)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Status(context.Background())
	if err != nil || s.Height != 7 {
		t.Fatalf("Status = %+v, %v", s, err)
	}
}

func TestAnAnswerIsFinal(t *testing.T) {
	calls := 0
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(409)
		w.Write([]byte(`{"type":"urn:imi:problem:bad_sequence","title":"t","status":409,"reason":"bad_sequence"}`))
	}))
	defer refusing.Close()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("a refused request was sent to a second node")
	}))
	defer other.Close()
	c, _ := New(refusing.URL + "," + other.URL)
	_, err := c.SubmitRaw(context.Background(), []byte(`{}`))
	p, ok := err.(*Problem)
	if !ok || p.Reason != "bad_sequence" || calls != 1 {
		t.Fatalf("err = %v, calls %d", err, calls)
	}
}

// TestBehindNodeIsSkipped: a node that has not seen the signer's earlier
// transactions refuses without accepting, so the next node is asked.
func TestBehindNodeIsSkipped(t *testing.T) {
	behind := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(503)
		w.Write([]byte(`{"type":"urn:imi:problem:sequence_ahead","title":"t","status":503,"reason":"sequence_ahead"}`))
	}))
	defer behind.Close()
	upToDate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"hash":"AB","status":"committed","height":9}`))
	}))
	defer upToDate.Close()
	c, _ := New(behind.URL + "," + upToDate.URL)
	r, err := c.SubmitRaw(context.Background(), []byte(`{}`))
	if err != nil || r.Height != 9 {
		t.Fatalf("SubmitRaw = %+v, %v", r, err)
	}
	// With no other node, the refusal is the answer.
	c, _ = New(behind.URL)
	if _, err := c.SubmitRaw(context.Background(), []byte(`{}`)); err == nil {
		t.Fatal("no error from a node that is behind")
	} else if p := (*Problem)(nil); !errors.As(err, &p) || p.Reason != "sequence_ahead" {
		t.Fatalf("err = %v", err)
	}
}

func TestNewRejectsBadAddresses(t *testing.T) {
	for _, s := range []string{"", " , ", "127.0.0.1:8080", "ftp://x", "http://"} {
		if _, err := New(s); err == nil {
			t.Errorf("New(%q) accepted", s)
		}
	}
}
