package service

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/pseudonym"
	"github.com/imi-city/imi/internal/tx"
)

// ApplicationLife is how long an opened application waits for the resident.
const ApplicationLife = 30 * time.Minute

// Application statuses.
const (
	StatusOpen     = "open"
	StatusReceived = "received"
)

// Application is a request for a resident's data that an authority opened
// for one service, and, once submitted, what it received.
type Application struct {
	ID        string    `json:"id"`
	Service   string    `json:"service"`
	Version   uint64    `json:"version"`
	Authority string    `json:"authority"`
	Audience  string    `json:"aud"`
	Nonce     string    `json:"nonce"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	Status    string    `json:"status"`
	// Set once received.
	Subject  string       `json:"subject,omitempty"`
	Consent  string       `json:"consent,omitempty"`
	AccessID tx.Bytes     `json:"access_id,omitempty"`
	Values   []FieldValue `json:"values,omitempty"`
	Guardian bool         `json:"guardian,omitempty"`
	Received *time.Time   `json:"received,omitempty"`
	Height   int64        `json:"height,omitempty"`
}

// FieldValue is one field of a received form.
type FieldValue struct {
	Name     string      `json:"name"`
	Claim    tx.ClaimRef `json:"claim"`
	Value    any         `json:"value"`
	Source   string      `json:"source,omitempty"`
	Verified bool        `json:"verified"`
}

// Submission is what a resident's wallet sends for an application.
type Submission struct {
	// Grant is the signed grant_consent transaction, in its canonical bytes.
	Grant tx.Bytes `json:"grant"`
	// Presentations are SD-JWT presentations with key binding to the
	// application's audience and nonce, one per credential used.
	Presentations []string `json:"presentations"`
	// SelfDeclared holds values the resident typed in, by field name.
	SelfDeclared map[string]string `json:"self_declared"`
}

const maxSelfDeclared = 256

func appKey(id string) string { return "app/" + id }

// openKey indexes an open application by its deadline, so expired ones are
// found in key order without reading the received ones.
func openKey(a *Application) string {
	return "appopen/" + a.Expires.UTC().Format("20060102T150405.000000000") + "/" + a.ID
}

// openEntry is the value under an openKey.
type openEntry struct {
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
}

// sweepEvery is how often Open clears expired applications: anyone who can
// open one (a resident through the portal) could otherwise fill the store.
const sweepEvery = time.Minute

// Open starts an application of authority for service.
func (d *Desk) Open(authority, service string) (*Application, error) {
	if !d.Holds(authority) {
		return nil, ErrNotHere
	}
	s, _, err := d.app.Service(service, 0)
	if err != nil {
		return nil, fmt.Errorf("no service %q", service)
	}
	if s.Authority != authority {
		return nil, fmt.Errorf("the service %s belongs to %s", service, s.Authority)
	}
	aud, err := d.authorityDID(authority)
	if err != nil {
		return nil, err
	}
	now := d.now().UTC()
	a := &Application{
		ID: base64.RawURLEncoding.EncodeToString(newRecordID()), Service: s.ID, Version: s.Version,
		Authority: authority, Audience: aud, Nonce: base64.RawURLEncoding.EncodeToString(newRecordID()),
		Created: now, Expires: now.Add(ApplicationLife), Status: StatusOpen,
	}
	d.sweep(now)
	if err := d.put(a); err != nil {
		return nil, err
	}
	b, err := json.Marshal(openEntry{ID: a.ID, Expires: a.Expires})
	if err != nil {
		return nil, err
	}
	return a, d.store.Put(openKey(a), b)
}

// sweep deletes open applications past their deadline, at most once every
// sweepEvery. They hold no personal data; this only bounds the store.
func (d *Desk) sweep(now time.Time) {
	d.sweepMu.Lock()
	defer d.sweepMu.Unlock()
	if now.Sub(d.swept) < sweepEvery {
		return
	}
	d.swept = now
	vals, err := d.store.List("appopen/")
	if err != nil {
		d.log.Warn("couldn't list open applications", "err", err)
		return
	}
	n := 0
	for _, v := range vals {
		var e openEntry
		if json.Unmarshal(v, &e) != nil {
			continue
		}
		if now.Before(e.Expires) {
			break // key order is deadline order
		}
		d.open.Lock()
		if !d.busy[e.ID] {
			if a, err := d.load(e.ID); err == nil && a.Status == StatusOpen {
				_ = d.store.Delete(appKey(e.ID))
			}
			_ = d.store.Delete(openKey(&Application{ID: e.ID, Expires: e.Expires}))
			n++
		}
		d.open.Unlock()
	}
	if n > 0 {
		d.log.Info("expired applications removed", "count", n)
	}
}

// load reads an application as stored, expired or not.
func (d *Desk) load(id string) (*Application, error) {
	b, err := d.store.Get(appKey(id))
	if errors.Is(err, ErrNoRecord) {
		return nil, ErrNoApplication
	} else if err != nil {
		return nil, err
	}
	var a Application
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

func (d *Desk) put(a *Application) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return d.store.Put(appKey(a.ID), b)
}

// Get returns an application. An open one past its deadline is gone.
func (d *Desk) Get(id string) (*Application, error) {
	a, err := d.load(id)
	if err != nil {
		return nil, err
	}
	if a.Status == StatusOpen && !d.now().Before(a.Expires) {
		_ = d.store.Delete(appKey(id))
		_ = d.store.Delete(openKey(a))
		return nil, ErrNoApplication
	}
	return a, nil
}

// Decline forgets an open application: nothing of it is kept.
func (d *Desk) Decline(id string) error {
	d.open.Lock()
	defer d.open.Unlock()
	if d.busy[id] {
		return ErrClosed
	}
	a, err := d.Get(id)
	if err != nil {
		return err
	}
	if a.Status != StatusOpen {
		return ErrClosed
	}
	_ = d.store.Delete(openKey(a))
	return d.store.Delete(appKey(id))
}

// Received lists the applications authority received.
func (d *Desk) Received(authority string) ([]Application, error) {
	if !d.Holds(authority) {
		return nil, ErrNotHere
	}
	ids, err := d.store.List("rcv/" + authority + "/")
	if err != nil {
		return nil, err
	}
	out := []Application{}
	for _, id := range ids {
		a, err := d.Get(string(id))
		if err != nil {
			return nil, err
		}
		out = append(out, *a)
	}
	return out, nil
}

// Rejection is a refused submission, with words for the resident.
type Rejection struct {
	EN, ZH string
	Detail string
}

func (e *Rejection) Error() string { return e.EN + ": " + e.Detail }

func refuse(en, zh, detail string, args ...any) *Rejection {
	return &Rejection{EN: en, ZH: zh, Detail: fmt.Sprintf(detail, args...)}
}

// Submit takes a resident's approved application: it checks the grant, the
// sealed subject and every presentation, commits the consent, records the
// access, and only then keeps the verified data.
func (d *Desk) Submit(ctx context.Context, id string, sub *Submission) (*Application, error) {
	a, err := d.claim(id)
	if err != nil {
		return nil, err
	}
	defer d.release(id)
	t, body, err := tx.Decode(sub.Grant)
	if err != nil {
		return nil, refuse("the consent is malformed", "同意书格式错误", "%v", err)
	}
	g, ok := body.(*tx.GrantConsent)
	if !ok || g.Service != a.Service || g.ServiceVersion != a.Version {
		return nil, refuse("the consent is not for this application", "同意书与本申请不符", "service %s version %d", a.Service, a.Version)
	}
	if _, err := pseudonym.Parse(t.Signer); err != nil {
		return nil, refuse("the consent must be signed under your pseudonym", "同意书须以您的化名签署", "%v", err)
	}
	boxes := g.Subjects
	s, why := d.openSubject(a.Authority, t.Signer, a.Service, boxes, g.Guardian != nil)
	if why != "" {
		en, zh := ledger.DenyReasonText(why)
		return nil, refuse(en, zh, "%s", why)
	}
	svc, _, err := d.app.Service(a.Service, 0)
	if err != nil {
		return nil, err
	}
	holder, _, err := d.app.ResidentRecord(s.DID, 0)
	if err != nil {
		return nil, err
	}
	values, rej := d.verifyPresentations(a, svc, g, sub, holder.Key)
	if rej != nil {
		return nil, rej
	}
	// A submission sent again after its grant committed but its access
	// record did not (the ledger was slow) goes on from the record.
	if r, err := d.app.TxResult(tx.Hash(sub.Grant)); err != nil || r.Code != ledger.OK {
		if err := d.commit(ctx, sub.Grant); err != nil {
			return nil, err
		}
	}
	c, _, err := d.app.Consent(t.Signer, a.Service, 0)
	if err != nil {
		return nil, err
	}
	rec := tx.AccessRecord{ID: newRecordID(), Subject: t.Signer, Reader: a.Authority, Service: a.Service,
		Claims: g.Claims, Channel: tx.ChannelPresentation, Outcome: tx.OutcomeAllowed}
	stored, err := d.recordOne(ctx, a.Authority, rec)
	if err != nil {
		return nil, err
	}
	if stored.Outcome != tx.OutcomeAllowed {
		return nil, &Denied{Reason: stored.Reason, Record: stored}
	}
	now := d.now().UTC()
	a.Status, a.Subject, a.Consent, a.AccessID, a.Values = StatusReceived, t.Signer, c.ID, rec.ID, values
	a.Guardian, a.Received, a.Height = s.Guardian != "", &now, stored.At.Height
	if err := d.put(a); err != nil {
		return nil, err
	}
	_ = d.store.Delete(openKey(a))
	return a, d.store.Put(receivedKey(a), []byte(a.ID))
}

// claim takes an open application for one submission: others wait for
// nothing, and a second submission of the same one is refused.
func (d *Desk) claim(id string) (*Application, error) {
	d.open.Lock()
	defer d.open.Unlock()
	if d.busy[id] {
		return nil, ErrClosed
	}
	a, err := d.Get(id)
	if err != nil {
		return nil, err
	}
	if a.Status != StatusOpen {
		return nil, ErrClosed
	}
	d.busy[id] = true
	return a, nil
}

func (d *Desk) release(id string) {
	d.open.Lock()
	defer d.open.Unlock()
	delete(d.busy, id)
}

// receivedKey indexes an authority's received applications by time.
func receivedKey(a *Application) string {
	return "rcv/" + a.Authority + "/" + a.Received.Format("20060102T150405.000000000") + "/" + a.ID
}

// verifyPresentations checks every presentation against the application and
// returns the form's values: exactly the consented claims, each verified and
// from its type's issuer, plus what the resident typed in for fields with no
// claim or with no credential, marked as self-declared.
//
// Every credential must be bound (cnf) to the current key of the resident
// the sealed subject names: otherwise someone holding another person's
// credentials and key could apply with them under their own DID.
func (d *Desk) verifyPresentations(a *Application, svc *ledger.Service, g *tx.GrantConsent, sub *Submission, holder key.Public) ([]FieldValue, *Rejection) {
	got := map[tx.ClaimRef]FieldValue{}
	nonces := onceNonces{}
	for i, p := range sub.Presentations {
		res := credential.Verify(credential.NewCached(d.app), p, credential.Policy{
			Audience: a.Audience, Nonce: a.Nonce, Now: d.now(), Nonces: nonces,
		})
		if res.Outcome != credential.Valid {
			return nil, refuse("a credential could not be accepted: "+res.Message, "凭证未通过核验："+res.MessageZH, "presentation %d: %s %s", i, res.Outcome, res.Reason)
		}
		if !boundTo(res.Claims, holder) {
			return nil, refuse("a credential was issued to another key than yours; ask its issuer to issue it again to your current key",
				"凭证绑定的密钥不是您当前的密钥，请向签发机关申请重新签发", "presentation %d", i)
		}
		for _, name := range res.Disclosed {
			ref := tx.ClaimRef{Type: res.Type, Claim: name}
			if !slices.Contains(g.Claims, ref) {
				return nil, refuse("a credential disclosed more than you consented to", "凭证披露的信息超出您同意的范围", "%s", ref)
			}
			got[ref] = FieldValue{Claim: ref, Value: res.Claims[name], Source: res.Issuer, Verified: true}
		}
	}
	if len(sub.SelfDeclared) > len(svc.Form) {
		return nil, refuse("too many typed-in fields", "自填字段过多", "")
	}
	var out []FieldValue
	for _, f := range svc.Form {
		typed, isTyped := sub.SelfDeclared[f.Name]
		// A consented item is verified or refused, never typed in, whether
		// or not a presentation also carries it: otherwise which of the
		// two the desk keeps would depend on what else was sent.
		if isTyped && slices.Contains(g.Claims, f.Claim) {
			return nil, refuse("an item you consented to share verified was typed in instead", "同意共享的已核验信息不能改为自填", "%s", f.Name)
		}
		if v, ok := got[f.Claim]; ok && f.Claim != (tx.ClaimRef{}) {
			v.Name = f.Name
			out = append(out, v)
			delete(got, f.Claim)
			continue
		}
		if isTyped {
			if len(typed) > maxSelfDeclared {
				return nil, refuse("a typed-in value is too long", "自填内容过长", "%s", f.Name)
			}
			out = append(out, FieldValue{Name: f.Name, Claim: f.Claim, Value: typed})
			continue
		}
		if slices.Contains(g.Claims, f.Claim) {
			return nil, refuse("a consented item was not presented", "缺少已同意提供的信息", "%s", f.Claim)
		}
	}
	for k := range sub.SelfDeclared {
		if !slices.ContainsFunc(svc.Form, func(f tx.FormField) bool { return f.Name == k }) {
			return nil, refuse("a typed-in field is not on the form", "自填字段不在表单上", "%.64s", k)
		}
	}
	return out, nil
}

// boundTo reports whether a verified credential's cnf key is k.
func boundTo(claims map[string]any, k key.Public) bool {
	cnf, _ := claims["cnf"].(map[string]any)
	jwk, _ := cnf["jwk"].(map[string]any)
	x, _ := jwk["x"].(string)
	return jwk["kty"] == "OKP" && jwk["crv"] == "Ed25519" && x == base64.RawURLEncoding.EncodeToString(k.Bytes())
}

// onceNonces accepts the application's nonce for each of its presentations:
// the application itself is used once, under the desk's lock.
type onceNonces struct{}

func (onceNonces) Use(string, time.Time) bool { return true }

// commit submits raw and waits for its block; a refusal comes back in the
// ledger's words.
func (d *Desk) commit(ctx context.Context, raw []byte) error {
	ctx, cancel := context.WithTimeout(ctx, recordWait)
	defer cancel()
	wait, stop := d.app.Watch(tx.Hash(raw))
	defer stop()
	res, err := d.chain.Submit(ctx, raw)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrLedgerBusy, err)
	}
	if res.Code != 0 {
		c := ledger.Code(res.Code)
		return refuse(c.Message(), c.MessageZH(), "%s", res.Log)
	}
	tr, err := wait(ctx)
	if err != nil {
		return ErrLedgerBusy
	}
	if tr.Code != ledger.OK {
		return refuse(tr.Code.Message(), tr.Code.MessageZH(), "%s", tr.Log)
	}
	return nil
}
