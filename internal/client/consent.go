package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/imi-city/imi/internal/authn"
	"github.com/imi-city/imi/internal/httpapi"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/tx"
)

// The consent layer's calls: the service catalogue, residents' sessions
// (their consents and access log), applications, and the requests an
// authority signs with its ledger key.

// reasonNotHere is the refusal of a node that does not act for the
// authority named in the path: it did nothing, so another node may.
const reasonNotHere = "not_here"

// ServicesResponse is the service catalogue.
type ServicesResponse struct {
	Height   int64            `json:"height"`
	Services []ledger.Service `json:"services"`
}

// Services lists the published services.
func (c *Client) Services(ctx context.Context) (*ServicesResponse, error) {
	var r ServicesResponse
	return &r, c.do(ctx, "GET", "/v1/services", nil, &r)
}

// Service returns one published service.
func (c *Client) Service(ctx context.Context, id string) (*ledger.Service, error) {
	var r ledger.Service
	return &r, c.do(ctx, "GET", "/v1/services/"+url.PathEscape(id), nil, &r)
}

// Challenge opens a sign-in challenge for a resident's wallet to sign.
func (c *Client) Challenge(ctx context.Context) (*authn.Challenge, error) {
	var r authn.Challenge
	return &r, c.do(ctx, "POST", "/v1/sessions/challenge", nil, &r)
}

// SignIn answers challenge with one proof per subject (a DID or a
// pseudonym) and returns the session.
func (c *Client) SignIn(ctx context.Context, challenge string, proofs []authn.Proof) (*httpapi.SessionResponse, error) {
	body, err := json.Marshal(httpapi.SignInRequest{Challenge: challenge, Proofs: proofs})
	if err != nil {
		return nil, err
	}
	var r httpapi.SessionResponse
	return &r, c.do(ctx, "POST", "/v1/sessions", body, &r)
}

// SignOut ends a session.
func (c *Client) SignOut(ctx context.Context, token string) error {
	return c.send(ctx, "DELETE", "/v1/sessions", nil, nil, bearer(token))
}

// MyConsents lists the consents of the session's pseudonyms.
func (c *Client) MyConsents(ctx context.Context, token string) ([]ledger.Consent, error) {
	var r struct {
		Consents []ledger.Consent `json:"consents"`
	}
	return r.Consents, c.send(ctx, "GET", "/v1/me/consents", nil, &r, bearer(token))
}

// AccessLogResponse is a list of access records as of a height.
type AccessLogResponse struct {
	Height  int64           `json:"height"`
	Records []ledger.Access `json:"records"`
}

// MyAccessLog lists every access record of the session's pseudonyms.
func (c *Client) MyAccessLog(ctx context.Context, token string) (*AccessLogResponse, error) {
	var r AccessLogResponse
	return &r, c.send(ctx, "GET", "/v1/me/access-log", nil, &r, bearer(token))
}

// AccessProof returns one access record of subject, one of the session's
// pseudonyms, with its Merkle proof at height (0: the latest).
func (c *Client) AccessProof(ctx context.Context, token, subject string, recordID []byte, height int64) (*httpapi.AccessProofResponse, error) {
	path := "/v1/me/access-log/" + url.PathEscape(subject) + "/" + base64.RawURLEncoding.EncodeToString(recordID)
	if height > 0 {
		path += "?height=" + strconv.FormatInt(height, 10)
	}
	var r httpapi.AccessProofResponse
	return &r, c.send(ctx, "GET", path, nil, &r, bearer(token))
}

// OpenApplication opens an application of authority for service; the
// request is signed with the authority's key.
func (c *Client) OpenApplication(ctx context.Context, authority string, k key.Private, svc string) (*service.Application, error) {
	body, err := json.Marshal(httpapi.OpenApplicationRequest{Service: svc})
	if err != nil {
		return nil, err
	}
	var r service.Application
	return &r, c.send(ctx, "POST", "/v1/authorities/"+url.PathEscape(authority)+"/applications", body, &r, signed(authority, k))
}

// ApplicationResponse is an application as a resident fetches it: while it
// is open, the request and the service it is for; after, only its status.
type ApplicationResponse struct {
	Application *service.Application `json:"application"`
	Service     *ledger.Service      `json:"service"`
	// ID and Status are set instead for an application no longer open.
	ID     string `json:"id"`
	Status string `json:"status"`
}

// Application fetches an application by id.
func (c *Client) Application(ctx context.Context, id string) (*ApplicationResponse, error) {
	var r ApplicationResponse
	if err := c.do(ctx, "GET", "/v1/applications/"+url.PathEscape(id), nil, &r); err != nil {
		return nil, err
	}
	if r.Application != nil {
		r.ID, r.Status = r.Application.ID, r.Application.Status
	}
	return &r, nil
}

// SubmitResult is the desk's answer to a submitted application.
type SubmitResult struct {
	ID       string   `json:"id"`
	Status   string   `json:"status"`
	Consent  string   `json:"consent"`
	Subject  string   `json:"subject"`
	AccessID tx.Bytes `json:"access_id"`
	Height   int64    `json:"height"`
}

// SubmitApplication sends the resident's approved application.
func (c *Client) SubmitApplication(ctx context.Context, id string, sub *service.Submission) (*SubmitResult, error) {
	body, err := json.Marshal(sub)
	if err != nil {
		return nil, err
	}
	var r SubmitResult
	return &r, c.do(ctx, "POST", "/v1/applications/"+url.PathEscape(id)+"/submit", body, &r)
}

// DeclineApplication declines an open application; the desk forgets it.
func (c *Client) DeclineApplication(ctx context.Context, id string) error {
	return c.do(ctx, "POST", "/v1/applications/"+url.PathEscape(id)+"/decline", nil, nil)
}

// ReceivedApplications lists the applications authority received, with
// their verified values.
func (c *Client) ReceivedApplications(ctx context.Context, authority string, k key.Private) ([]service.Application, error) {
	var r struct {
		Applications []service.Application `json:"applications"`
	}
	return r.Applications, c.send(ctx, "GET", "/v1/authorities/"+url.PathEscape(authority)+"/applications", nil, &r, signed(authority, k))
}

// AuthorityAccess lists the access records in which authority is reader or
// source, from height from on, at most limit (0: the node's maximum).
func (c *Client) AuthorityAccess(ctx context.Context, authority string, k key.Private, from int64, limit int) (*AccessLogResponse, error) {
	q := url.Values{}
	if from > 0 {
		q.Set("from", strconv.FormatInt(from, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/authorities/" + url.PathEscape(authority) + "/access"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var r AccessLogResponse
	return &r, c.send(ctx, "GET", path, nil, &r, signed(authority, k))
}

// BackOfficeRead asks source's node for claims of a resident under a
// standing consent, signed by reader. It returns the package the source
// signed; a refusal is a *Problem whose Reason is the ledger's deny reason.
func (c *Client) BackOfficeRead(ctx context.Context, reader string, k key.Private, source string, req *service.ReadRequest) (string, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	var r httpapi.ReadResponse
	return r.Package, c.send(ctx, "POST", "/v1/authorities/"+url.PathEscape(source)+"/back-office/read", body, &r, signed(reader, k))
}

// CheckResult answers whether a read would be allowed now.
type CheckResult struct {
	Allowed   bool      `json:"allowed"`
	Height    int64     `json:"height"`
	Time      time.Time `json:"time"`
	Consent   string    `json:"consent"`
	Reason    string    `json:"reason"`
	Message   string    `json:"message"`
	MessageZH string    `json:"message_zh"`
}

// ConsentCheck asks whether authority may read now, by the latest block,
// without reading or recording anything.
func (c *Client) ConsentCheck(ctx context.Context, authority string, k key.Private, req *httpapi.CheckRequest) (*CheckResult, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var r CheckResult
	return &r, c.send(ctx, "POST", "/v1/authorities/"+url.PathEscape(authority)+"/consent-check", body, &r, signed(authority, k))
}

// PutRecord stores authority's data of record of type typ about resident
// in its node's off-chain register.
func (c *Client) PutRecord(ctx context.Context, authority string, k key.Private, resident, typ string, claims map[string]any) error {
	body, err := json.Marshal(claims)
	if err != nil {
		return err
	}
	path := "/v1/authorities/" + url.PathEscape(authority) + "/records/" + url.PathEscape(resident) + "/" + url.PathEscape(typ)
	return c.send(ctx, "PUT", path, body, nil, signed(authority, k))
}

// WaitTx polls for the outcome of a transaction a node accepted but had not
// committed when it answered, until it commits or ctx ends.
func (c *Client) WaitTx(ctx context.Context, hash string) (*httpapi.TxResponse, error) {
	for {
		r, err := c.Tx(ctx, hash)
		var p *Problem
		switch {
		case err == nil:
			return r, nil
		case errors.As(err, &p) && p.Status == http.StatusNotFound:
		default:
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("transaction %s did not commit in time: %w", hash, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// prepare adds authentication to a request just before it is sent.
type prepare func(r *http.Request, body []byte) error

func bearer(token string) prepare {
	return func(r *http.Request, _ []byte) error {
		r.Header.Set("Authorization", "Bearer "+token)
		return nil
	}
}

// signed signs each request afresh, so a request that moves on to another
// node carries its own nonce.
func signed(authority string, k key.Private) prepare {
	return func(r *http.Request, body []byte) error {
		return authn.SignRequest(r, body, authority, k, time.Now())
	}
}

// A session lives on the node that opened it, so a resident's calls reach
// another node only when the first is down; send (client.go) moves on.
