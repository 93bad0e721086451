package service

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/imi-city/imi/internal/consent"
	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/pseudonym"
	"github.com/imi-city/imi/internal/sdjwt"
	"github.com/imi-city/imi/internal/tx"
	"github.com/imi-city/imi/internal/wallet"
)

// PseudonymSecretField is where a wallet keeps its pseudonym secret.
const PseudonymSecretField = "pseudonym_secret"

// PseudonymSecret returns the wallet's pseudonym secret, making one if the
// wallet has none yet; created reports that the wallet must be saved.
func PseudonymSecret(c *wallet.Contents) (secret []byte, created bool, err error) {
	if raw, ok := c.Extra[PseudonymSecretField]; ok {
		var b tx.Bytes
		if err := json.Unmarshal(raw, &b); err != nil || len(b) != pseudonym.SecretSize {
			return nil, false, errors.New("the wallet's pseudonym secret is damaged")
		}
		return b, false, nil
	}
	b, err := pseudonym.NewSecret()
	if err != nil {
		return nil, false, err
	}
	raw, err := json.Marshal(tx.Bytes(b))
	if err != nil {
		return nil, false, err
	}
	if c.Extra == nil {
		c.Extra = map[string]json.RawMessage{}
	}
	c.Extra[PseudonymSecretField] = raw
	return b, true, nil
}

// Pseudonyms derives the wallet's pseudonym towards each authority.
func Pseudonyms(secret []byte, authorities []string) (map[string]key.Private, error) {
	out := map[string]key.Private{}
	for _, a := range authorities {
		k, err := pseudonym.Derive(secret, a)
		if err != nil {
			return nil, err
		}
		out[a] = k
	}
	return out, nil
}

// Held parses the wallet's credentials into what a form is filled from.
// Expired ones are left out; the verifier would refuse them anyway.
func Held(c *wallet.Contents, now time.Time) []consent.Held {
	var out []consent.Held
	for i, cr := range c.Credentials {
		if !cr.ExpiresAt.IsZero() && !now.Before(cr.ExpiresAt) {
			continue
		}
		p, err := sdjwt.Parse(cr.SDJWT, sdjwt.Limits{})
		if err != nil {
			continue
		}
		claims := map[string]any{}
		for _, d := range p.Disclosures {
			if d.Name != "" {
				claims[d.Name] = d.Value
			}
		}
		out = append(out, consent.Held{Type: cr.Type, Issuer: cr.IssuerID, Claims: claims, Index: i})
	}
	return out
}

// Sensitivity returns the sensitive(c) function Prefill needs.
func Sensitivity(types []ledger.CredentialType) func(tx.ClaimRef) bool {
	return func(c tx.ClaimRef) bool {
		for _, t := range types {
			if t.ID == c.Type {
				s, ok := t.Claim(c.Claim)
				return !ok || s.Sensitive
			}
		}
		return true
	}
}

// Choice is the resident's decision on a filled form.
type Choice struct {
	Mode string
	Days uint32
	// Omit lists optional field names the resident does not want to share.
	Omit []string
	// Typed holds values for fields with no claim (or no credential).
	Typed map[string]string
	// Seq is the next sequence number of the pseudonym on lane 0.
	Seq uint64
	// Guardian, when set, is the wallet of a guardian acting for the
	// wallet's owner: the grant carries the guardian's co-signature under the
	// guardian's own pseudonym, and the sealed subject names the guardian.
	Guardian *Guardian
}

// Guardian is a guardian's wallet and pseudonym secret.
type Guardian struct {
	Contents *wallet.Contents
	Secret   []byte
}

// act co-signs body, made by the ward's pseudonym signer, as the guardian's
// pseudonym towards authority.
func (g *Guardian) act(chainID, signer, authority string, body tx.Body) (*tx.GuardianAct, error) {
	k, err := pseudonym.Derive(g.Secret, authority)
	if err != nil {
		return nil, err
	}
	act := &tx.GuardianAct{Pseudonym: pseudonym.FromKey(k.Public()).String()}
	switch b := body.(type) {
	case *tx.GrantConsent:
		b.Guardian = act
	case *tx.RevokeConsent:
		b.Guardian = act
	}
	act.Sig = k.Sign(tx.GuardianSignBytes(chainID, signer, body))
	return act, nil
}

// Revoke builds the signed revocation of the wallet's consent to svc (of
// authority), co-signed by guardian if one acts.
func Revoke(secret []byte, authority, svc, chainID string, seq uint64, guardian *Guardian) ([]byte, error) {
	k, err := pseudonym.Derive(secret, authority)
	if err != nil {
		return nil, err
	}
	psn := pseudonym.FromKey(k.Public()).String()
	body := &tx.RevokeConsent{Service: svc}
	if guardian != nil {
		if _, err := guardian.act(chainID, psn, authority, body); err != nil {
			return nil, err
		}
	}
	t, err := tx.New(chainID, psn, 0, seq, body)
	if err != nil {
		return nil, err
	}
	t.Sign(k)
	return t.Encode(), nil
}

// Approve turns an approved form into a submission: a grant signed under the
// wallet's pseudonym towards the service's authority, the subject sealed to
// every authority party to it, and one presentation per credential used,
// each disclosing only the form's claims and bound to the application.
func Approve(c *wallet.Contents, secret []byte, a *Application, svc *ledger.Service, form *consent.Form,
	kem map[string][]byte, chainID string, ch Choice, now time.Time) (*Submission, error) {
	if len(form.Missing) > 0 {
		var names []string
		for _, m := range form.Missing {
			names = append(names, m.String())
		}
		return nil, fmt.Errorf("you hold no verified value for %s; ask the issuing authority for that credential first", strings.Join(names, ", "))
	}
	didKey, err := key.FromSeed(c.Key)
	if err != nil {
		return nil, err
	}
	psnKey, err := pseudonym.Derive(secret, svc.Authority)
	if err != nil {
		return nil, err
	}
	psn := pseudonym.FromKey(psnKey.Public()).String()
	kept := *form
	kept.Fields = slices.DeleteFunc(slices.Clone(form.Fields), func(f consent.Field) bool {
		return !f.Required && slices.Contains(ch.Omit, f.Name)
	})
	g := kept.Grant(ch.Mode, ch.Days)
	parties := append([]string{svc.Authority}, kept.Sources()...)
	slices.Sort(parties)
	parties = slices.Compact(parties)
	gDID, gKey := "", key.Private{}
	if ch.Guardian != nil {
		if gKey, err = key.FromSeed(ch.Guardian.Contents.Key); err != nil {
			return nil, err
		}
		gDID = ch.Guardian.Contents.DID
	}
	for _, p := range parties {
		ctx := consent.Context{ChainID: chainID, Pseudonym: psn, Service: svc.ID, Authority: p}
		pub, ok := kem[p]
		if !ok || len(pub) == 0 {
			return nil, fmt.Errorf("the authority %s has published no key to seal consents to", p)
		}
		box, err := consent.Seal(pub, ctx, consent.NewSubject(ctx, c.DID, didKey, gDID, gKey))
		if err != nil {
			return nil, err
		}
		g.Subjects = append(g.Subjects, tx.SealedSubject{Authority: p, Box: box})
	}
	if ch.Guardian != nil {
		if _, err := ch.Guardian.act(chainID, psn, svc.Authority, g); err != nil {
			return nil, err
		}
	}
	t, err := tx.New(chainID, psn, 0, ch.Seq, g)
	if err != nil {
		return nil, err
	}
	t.Sign(psnKey)
	sub := &Submission{Grant: t.Encode(), SelfDeclared: map[string]string{}}
	byCred := map[int][]string{}
	for _, f := range kept.Fields {
		if f.Verified && f.Credential >= 0 && slices.Contains(g.Claims, f.Claim) {
			byCred[f.Credential] = append(byCred[f.Credential], f.Claim.Claim)
		}
	}
	idx := make([]int, 0, len(byCred))
	for i := range byCred {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	for _, i := range idx {
		p, err := sdjwt.Present(c.Credentials[i].SDJWT, byCred[i])
		if err != nil {
			return nil, err
		}
		p, err = sdjwt.AddKeyBinding(p, credential.Signer(didKey), a.Audience, a.Nonce, now)
		if err != nil {
			return nil, err
		}
		sub.Presentations = append(sub.Presentations, p)
	}
	for _, f := range svc.Form {
		if v, ok := ch.Typed[f.Name]; ok && v != "" && !slices.Contains(g.Claims, f.Claim) {
			sub.SelfDeclared[f.Name] = v
		}
	}
	return sub, nil
}
