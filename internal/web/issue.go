package web

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
	"github.com/imi-city/imi/internal/wallet"
)

// Issue lanes: the counter and the console sign on their own sequence lanes
// so a clerk and a caseworker of one authority never wait on each other.
const (
	laneCounter uint32 = 200
	laneConsole uint32 = 201
)

// errNotIssuer is returned when this node holds no key of the authority or
// the authority may not issue the type.
var errNotIssuer = errors.New("this authority may not issue that credential type here")

// sign signs body as authority on lane and waits for its block.
func (p *Portal) sign(ctx context.Context, authority string, lane uint32, body tx.Body) (message, error) {
	k, ok := p.cfg.Keys[authority]
	if !ok {
		return say("err.no_key"), fmt.Errorf("this node holds no key of %s", authority)
	}
	res, err := p.cfg.Node.Sign(ctx, k, did.FromKey(k.Public()), lane, body)
	if err == nil && res.Status != "committed" {
		// The node answered before the block: wait for it, or a page
		// would go on as if the write were done.
		return p.waitCommitted(ctx, res.Hash)
	}
	return refusal(err), err
}

// issue issues a credential of type typ to the registered resident subject,
// as authority, and returns it as a wallet keeps it. Only a status entry is
// written to the ledger; the claims go to the resident alone.
func (p *Portal) issue(ctx context.Context, authority string, lane uint32, typ, subject string, claims map[string]any, days int) (*wallet.Credential, message, error) {
	k, ok := p.cfg.Keys[authority]
	if !ok {
		return nil, say("err.no_key"), errNotIssuer
	}
	au, _, err := p.cfg.App.Authority(authority, 0)
	if err != nil {
		return nil, say("err.no_key"), err
	}
	ct, _, err := p.cfg.App.CredentialType(typ, 0)
	if err != nil {
		return nil, say("err.no_type"), err
	}
	if !au.HasRole(ledger.RoleIssuerPrefix + ct.ID) {
		return nil, say("err.not_issuer"), errNotIssuer
	}
	if days <= 0 || days > int(ct.MaxValidityDays) {
		days = int(ct.MaxValidityDays)
	}
	res, _, err := p.cfg.App.ResidentRecord(subject, 0)
	if err != nil {
		return nil, say("err.not_registered"), err
	}
	if res.Deactivated {
		return nil, say("err.deactivated"), errors.New("the resident's DID is deactivated")
	}
	signer := did.FromKey(k.Public())
	is := &credential.Issuer{
		Authority: au,
		Key:       k,
		Type:      ct,
		Fill:      func(context.Context) ([]uint64, error) { return p.cfg.App.StatusListFill(au.ID) },
		Reserve: func(ctx context.Context, list, index uint32) error {
			_, err := p.cfg.Node.Sign(ctx, k, signer, lane, &tx.ReserveStatus{Type: ct.ID, List: list, Indices: []uint32{index}})
			if pr := problemOf(err); pr != nil && pr.Reason == ledger.CodeStatusIndexTaken.Name() {
				return credential.ErrIndexTaken
			}
			return err
		},
		Now:  p.cfg.Now,
		Rand: rand.Reader,
	}
	issued, err := is.Issue(ctx, credential.Subject{DID: res.DID, Key: res.Key}, claims, time.Duration(days)*24*time.Hour)
	if err != nil {
		return nil, refusal(err), fmt.Errorf("couldn't issue %s: %w", typ, err)
	}
	return &wallet.Credential{
		ID: wallet.CredentialID(issued.SDJWT), SDJWT: issued.SDJWT, Type: issued.Type, VCT: issued.VCT,
		Issuer: issued.IssuerDID, IssuerID: issued.Issuer, IssuedAt: issued.IssuedAt, ExpiresAt: issued.ExpiresAt,
		StatusURI: issued.StatusURI, StatusIdx: uint64(issued.StatusIdx), Added: p.cfg.Now().UTC().Truncate(time.Second),
	}, message{}, nil
}
