package web

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/imi-city/imi/internal/client"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

// directory is the public names the pages show: authorities, services and
// credential types as the ledger publishes them.
type directory struct {
	authorityIDs []string
	authorities  map[string]*ledger.Authority
	services     map[string]*ledger.Service
	types        map[string]*ledger.CredentialType
}

// directory returns the names as of the latest block. It is rebuilt once a
// block, not once a page: decoding every authority, service and type took
// nearly half of a page's time. Callers must not change it.
func (p *Portal) directory() *directory {
	h := p.cfg.App.Height()
	p.dirMu.Lock()
	defer p.dirMu.Unlock()
	if p.dir != nil && p.dirHeight == h {
		return p.dir
	}
	p.dir, p.dirHeight = p.buildDirectory(), h
	return p.dir
}

func (p *Portal) buildDirectory() *directory {
	d := &directory{authorities: map[string]*ledger.Authority{}, services: map[string]*ledger.Service{}, types: map[string]*ledger.CredentialType{}}
	if as, _, err := p.cfg.App.Authorities(0); err == nil {
		for i := range as {
			d.authorities[as[i].ID] = &as[i]
			d.authorityIDs = append(d.authorityIDs, as[i].ID)
		}
	}
	sort.Strings(d.authorityIDs)
	if ss, _, err := p.cfg.App.Services(0); err == nil {
		for i := range ss {
			d.services[ss[i].ID] = &ss[i]
		}
	}
	if ts, _, err := p.cfg.App.CredentialTypes(0); err == nil {
		for i := range ts {
			d.types[ts[i].ID] = &ts[i]
		}
	}
	return d
}

func (d *directory) authorityNames(id string) (zh, en string) {
	if a := d.authorities[id]; a != nil {
		return a.NameZH, a.NameEN
	}
	return id, id
}

func (d *directory) serviceNames(id string) (zh, en string) {
	if s := d.services[id]; s != nil {
		return s.NameZH, s.NameEN
	}
	return id, id
}

func (d *directory) typeNames(id string) (zh, en string) {
	if t := d.types[id]; t != nil {
		return t.NameZH, t.NameEN
	}
	return id, id
}

func (d *directory) claimSpec(c tx.ClaimRef) (tx.ClaimSpec, bool) {
	if t := d.types[c.Type]; t != nil {
		for _, s := range t.Claims {
			if s.Name == c.Claim {
				return s, true
			}
		}
	}
	return tx.ClaimSpec{}, false
}

func (d *directory) claimNames(cs []tx.ClaimRef) (zh, en string) {
	var z, e []string
	for _, c := range cs {
		if s, ok := d.claimSpec(c); ok {
			z, e = append(z, s.NameZH), append(e, s.NameEN)
		} else {
			z, e = append(z, c.Claim), append(e, c.Claim)
		}
	}
	return strings.Join(z, "、"), strings.Join(e, ", ")
}

// accessEntry is an access record with the names of what it refers to, as
// the resident's data log and the authority's access records show it.
type accessEntry struct {
	ledger.Access
	ReaderZH, ReaderEN   string
	SourceZH, SourceEN   string // "" when the resident's wallet presented it
	ServiceZH, ServiceEN string
	ClaimsZH, ClaimsEN   string
	ReasonZH, ReasonEN   string // why the ledger denied it
	Allowed              bool
}

func (d *directory) accessEntry(a ledger.Access) accessEntry {
	v := accessEntry{Access: a, Allowed: a.Outcome == tx.OutcomeAllowed}
	v.ReaderZH, v.ReaderEN = d.authorityNames(a.Reader)
	if a.Source != "" {
		v.SourceZH, v.SourceEN = d.authorityNames(a.Source)
	}
	v.ServiceZH, v.ServiceEN = d.serviceNames(a.Service)
	v.ClaimsZH, v.ClaimsEN = d.claimNames(a.Claims)
	if !v.Allowed {
		v.ReasonEN, v.ReasonZH = ledger.DenyReasonText(a.Reason)
	}
	return v
}

// typeClaims lists the claims of t that present holds, in the type's order.
func typeClaims(t *ledger.CredentialType, present map[string]any) []tx.ClaimSpec {
	if t == nil {
		return nil
	}
	var out []tx.ClaimSpec
	for _, s := range t.Claims {
		if _, ok := present[s.Name]; ok {
			out = append(out, s)
		}
	}
	return out
}

func formatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case bool:
		if x {
			return "✓"
		}
		return "✗"
	case float64:
		if x == float64(int64(x)) {
			return fmt.Sprintf("%d", int64(x))
		}
		return fmt.Sprint(x)
	case string:
		return x
	}
	return fmt.Sprint(v)
}

// commit sends a signed transaction through the node's API and waits for
// its block. A refusal comes back in the ledger's words, both languages.
func (p *Portal) commit(ctx context.Context, raw []byte) (message, error) {
	res, err := p.cfg.Node.SubmitRaw(ctx, raw)
	if err == nil && res.Status != "committed" {
		return p.waitCommitted(ctx, res.Hash)
	}
	return refusal(err), err
}

// waitCommitted waits for a pending transaction's block.
func (p *Portal) waitCommitted(ctx context.Context, hash string) (message, error) {
	r, err := p.cfg.Node.WaitTx(ctx, hash)
	if err != nil {
		return say("err.ledger_busy"), err
	}
	if r.Code != ledger.OK {
		return words(r.Code.MessageZH(), r.Code.Message()), fmt.Errorf("refused: %s", r.Code.Name())
	}
	return message{}, nil
}

// refusal turns an API error into words for the reader.
func refusal(err error) message {
	if err == nil {
		return message{}
	}
	var pr *client.Problem
	if errors.As(err, &pr) {
		if pr.Code != 0 {
			c := ledger.Code(pr.Code)
			return words(c.MessageZH(), c.Message())
		}
		if pr.TitleZH != "" {
			return words(pr.TitleZH, pr.Title)
		}
		return words(pr.Title, pr.Title)
	}
	return say("err.internal")
}

func problemOf(err error) *client.Problem {
	var pr *client.Problem
	if errors.As(err, &pr) {
		return pr
	}
	return nil
}
