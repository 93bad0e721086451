// Package client talks to IMI nodes over the HTTP API. It is what the CLI
// uses; it tries the next node when one does not answer.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/httpapi"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

// maxResponse bounds what the client reads from a node.
const maxResponse = 16 << 20

// Client calls one or more nodes of the same network.
type Client struct {
	nodes []string
	http  *http.Client
}

// New returns a client for the comma-separated node URLs.
func New(nodes string) (*Client, error) {
	var list []string
	for _, n := range strings.Split(nodes, ",") {
		n = strings.TrimRight(strings.TrimSpace(n), "/")
		if n == "" {
			continue
		}
		u, err := url.Parse(n)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("node address %q: use http://host:port", n)
		}
		list = append(list, n)
	}
	if len(list) == 0 {
		return nil, errors.New("no node address given")
	}
	// A registrar's back office submits from many goroutines at once; the
	// default transport keeps only two idle connections per node.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &Client{nodes: list, http: &http.Client{Timeout: 60 * time.Second, Transport: tr}}, nil
}

// Problem is a refusal from the node (RFC 9457).
type Problem = httpapi.Problem

// reasonSequenceAhead is the refusal of a node that is behind the signer.
const reasonSequenceAhead = "sequence_ahead"

// do sends a request to each node in turn until one answers. Only a failure
// to connect, or a node saying it did not act on the request (it is behind
// the signer, or does not act for the authority in the path), moves on to the
// next node: any other answer, even an error, is final, so a write is never
// sent twice to two nodes after one accepted it.
func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	return c.send(ctx, method, path, body, out, nil)
}

// send is do with auth, if not nil, run on each request just before it goes
// out (a signed request is signed afresh for each node, with its own nonce).
func (c *Client) send(ctx context.Context, method, path string, body []byte, out any, auth prepare) error {
	var lastErr error
	for _, n := range c.nodes {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, n+path, rd)
		if err != nil {
			return err
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if auth != nil {
			if err := auth(req, body); err != nil {
				return err
			}
		}
		resp, err := c.http.Do(req)
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("couldn't read the answer of %s: %w", n, err)
		}
		if resp.StatusCode >= 400 {
			var p Problem
			if json.Unmarshal(b, &p) == nil && p.Reason != "" {
				// A node that did not act on the request: another may.
				if p.Reason == reasonSequenceAhead || p.Reason == reasonNotHere {
					lastErr = &p
					continue
				}
				return &p
			}
			return fmt.Errorf("%s answered %s", n, resp.Status)
		}
		if out == nil || len(b) == 0 {
			return nil
		}
		if raw, ok := out.(*[]byte); ok {
			*raw = b
			return nil
		}
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("couldn't decode the answer of %s: %w", n, err)
		}
		return nil
	}
	return fmt.Errorf("no node answered (%s): %w", strings.Join(c.nodes, ", "), lastErr)
}

// Status returns the node's status.
func (c *Client) Status(ctx context.Context) (*httpapi.StatusResponse, error) {
	var s httpapi.StatusResponse
	return &s, c.do(ctx, "GET", "/v1/status", nil, &s)
}

// Submit sends a signed transaction and waits for its commit.
func (c *Client) Submit(ctx context.Context, t *tx.Tx) (*httpapi.SubmitResponse, error) {
	var r httpapi.SubmitResponse
	return &r, c.do(ctx, "POST", "/v1/txs", t.Encode(), &r)
}

// SubmitRaw sends transaction bytes as they are.
func (c *Client) SubmitRaw(ctx context.Context, raw []byte) (*httpapi.SubmitResponse, error) {
	var r httpapi.SubmitResponse
	return &r, c.do(ctx, "POST", "/v1/txs", raw, &r)
}

// Tx returns a committed transaction's outcome.
func (c *Client) Tx(ctx context.Context, hash string) (*httpapi.TxResponse, error) {
	var r httpapi.TxResponse
	return &r, c.do(ctx, "GET", "/v1/txs/"+url.PathEscape(hash), nil, &r)
}

// Resolve resolves a DID; height 0 means the latest.
func (c *Client) Resolve(ctx context.Context, d string, height int64, proof bool) (*httpapi.ResolveResponse, error) {
	q := url.Values{}
	if height > 0 {
		q.Set("height", strconv.FormatInt(height, 10))
	}
	if proof {
		q.Set("proof", "true")
	}
	var r httpapi.ResolveResponse
	path := "/v1/dids/" + url.PathEscape(d)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return &r, c.do(ctx, "GET", path, nil, &r)
}

// Authorities lists the authorities.
func (c *Client) Authorities(ctx context.Context) (*httpapi.AuthoritiesResponse, error) {
	var r httpapi.AuthoritiesResponse
	return &r, c.do(ctx, "GET", "/v1/authorities", nil, &r)
}

// Proposals lists governance proposals.
func (c *Client) Proposals(ctx context.Context) (*httpapi.ProposalsResponse, error) {
	var r httpapi.ProposalsResponse
	return &r, c.do(ctx, "GET", "/v1/proposals", nil, &r)
}

// Proposal returns one proposal.
func (c *Client) Proposal(ctx context.Context, id string) (*ledger.Proposal, error) {
	var r ledger.Proposal
	return &r, c.do(ctx, "GET", "/v1/proposals/"+url.PathEscape(id), nil, &r)
}

// NextSeq returns the next sequence number of signer on lane.
func (c *Client) NextSeq(ctx context.Context, signer string, lane uint32) (uint64, error) {
	var r httpapi.SequenceResponse
	err := c.do(ctx, "GET", fmt.Sprintf("/v1/accounts/%s/sequence?lane=%d", url.PathEscape(signer), lane), nil, &r)
	return r.Next, err
}

// CommitJSON returns the signed header of a block as the node encodes it.
func (c *Client) CommitJSON(ctx context.Context, height int64) (json.RawMessage, error) {
	var r json.RawMessage
	return r, c.do(ctx, "GET", fmt.Sprintf("/v1/blocks/%d/commit", height), nil, &r)
}

// Sign builds, signs and submits a transaction from signer with k, taking the
// next sequence number of lane from the node.
func (c *Client) Sign(ctx context.Context, k key.Private, signer did.DID, lane uint32, body tx.Body) (*httpapi.SubmitResponse, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	seq, err := c.NextSeq(ctx, signer.String(), lane)
	if err != nil {
		return nil, err
	}
	t, err := tx.New(st.ChainID, signer.String(), lane, seq, body)
	if err != nil {
		return nil, err
	}
	t.Sign(k)
	return c.Submit(ctx, t)
}

// CredentialTypes lists the published credential types.
func (c *Client) CredentialTypes(ctx context.Context) (*httpapi.CredentialTypesResponse, error) {
	var r httpapi.CredentialTypesResponse
	return &r, c.do(ctx, "GET", "/v1/credential-types", nil, &r)
}

// CredentialType returns one credential type.
func (c *Client) CredentialType(ctx context.Context, id string) (*ledger.CredentialType, error) {
	var r ledger.CredentialType
	return &r, c.do(ctx, "GET", "/v1/credential-types/"+url.PathEscape(id), nil, &r)
}

// Authority returns one authority by id or DID.
func (c *Client) Authority(ctx context.Context, id string) (*ledger.Authority, error) {
	var r ledger.Authority
	return &r, c.do(ctx, "GET", "/v1/authorities/"+url.PathEscape(id), nil, &r)
}

// StatusFill returns how many entries each of issuer's status lists holds.
func (c *Client) StatusFill(ctx context.Context, issuer string) ([]uint64, error) {
	var r httpapi.StatusFillResponse
	return r.Fill, c.do(ctx, "GET", "/v1/status-lists/"+url.PathEscape(issuer), nil, &r)
}

// StatusEntry returns one status entry as the ledger holds it.
func (c *Client) StatusEntry(ctx context.Context, issuer string, list, index uint32) (*ledger.StatusEntry, error) {
	var r ledger.StatusEntry
	return &r, c.do(ctx, "GET", fmt.Sprintf("/v1/status-lists/%s/%d/%d", url.PathEscape(issuer), list, index), nil, &r)
}

// StatusListToken returns the signed status-list token of one list.
func (c *Client) StatusListToken(ctx context.Context, issuer string, list uint32) (string, error) {
	var b []byte
	err := c.do(ctx, "GET", fmt.Sprintf("/v1/status-lists/%s/%d", url.PathEscape(issuer), list), nil, &b)
	return string(b), err
}

// VerifyPresentation asks the node to verify a presentation made for aud and
// nonce. The verdict is in the result; an error means no verdict was given.
func (c *Client) VerifyPresentation(ctx context.Context, presentation, aud, nonce string) (*credential.Result, error) {
	body, err := json.Marshal(httpapi.VerifyRequest{Presentation: presentation, Audience: aud, Nonce: nonce})
	if err != nil {
		return nil, err
	}
	var r credential.Result
	return &r, c.do(ctx, "POST", "/v1/presentations/verify", body, &r)
}
