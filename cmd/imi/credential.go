package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/imi-city/imi/internal/client"
	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/jws"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

// maxClaimsFile bounds a --claims file; a credential's values are a few
// hundred bytes.
const maxClaimsFile = 64 << 10

func init() {
	register(&command{
		name:     "credential types",
		summary:  "list the credential types published on the ledger and their claims",
		usage:    "[--node URL] [--json]",
		examples: `  imi credential types`,
		run:      credentialTypes,
	})
	register(&command{
		name:    "credential issue",
		summary: "issue a credential to a registered resident; the issuer keeps no copy",
		usage:   "(--as ID | --key FILE) --type T --to DID --claims FILE.json [--days N] --out FILE [--node URL]",
		examples: `  imi credential issue --as cc-psb --type resident_identity --to did:imi:… \
      --claims ./alice-claims.json --out ./alice-identity.json
  # alice-claims.json: {"family_name": "张", "given_name": "丽", "ethnicity": "汉",
  #   "resident_id_number": "440604199003070021", "registered_address": "…"}
  # hand ./alice-identity.json to the resident (imi wallet add), then delete it`,
		run: credentialIssue,
	})
	for _, s := range []struct{ verb, summary, note string }{
		{"revoke", "revoke a credential the authority issued (final)", "# revocation is final; use suspend for a pause"},
		{"suspend", "suspend a credential the authority issued until unsuspended", "# verifiers see it as suspended until imi credential unsuspend"},
		{"unsuspend", "lift the suspension of a credential the authority issued", "# only a suspended credential can be unsuspended"},
	} {
		register(&command{
			name:    "credential " + s.verb,
			summary: s.summary,
			usage:   "(--as ID | --key FILE) (--credential FILE | --list L --index I) [--node URL]",
			examples: fmt.Sprintf(`  imi credential %[1]s --as cc-psb --credential ./alice-identity.json
  imi credential %[1]s --as cc-psb --list 0 --index 734021
  %[2]s`, s.verb, s.note),
			run: setStatus(s.verb),
		})
	}
}

func credentialTypes(ctx context.Context, e *env, args []string) error {
	c := find("credential types")
	fs := c.flags(e)
	n := addNode(fs.String, e)
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	r, err := cl.CredentialTypes(ctx)
	if err != nil {
		return explain(err)
	}
	if *asJSON {
		return printJSON(e, r)
	}
	if len(r.Types) == 0 {
		fmt.Fprintf(e.stdout, "No credential types are published (as of height %d).\n", r.Height)
		return nil
	}
	for i, t := range r.Types {
		if i > 0 {
			fmt.Fprintln(e.stdout)
		}
		fmt.Fprintf(e.stdout, "%s — %s / %s\n", t.ID, t.NameZH, t.NameEN)
		fmt.Fprintf(e.stdout, "  vct:     %s\n  issuer:  %s (version %d, valid at most %d days)\n  claims:\n", t.VCT, t.Issuer, t.Version, t.MaxValidityDays)
		var rows [][]string
		for _, s := range t.Claims {
			mark := ""
			if s.Sensitive {
				mark = "敏感/sensitive"
			}
			rows = append(rows, []string{s.Name, mark, s.NameZH + " / " + s.NameEN})
		}
		printTable(e.stdout, "    ", rows)
	}
	fmt.Fprintf(e.stdout, "\n(as of height %d)\n", r.Height)
	return nil
}

func credentialIssue(ctx context.Context, e *env, args []string) error {
	c := find("credential issue")
	fs := c.flags(e)
	s := addSigner(fs, e)
	n := addNode(fs.String, e)
	typ := fs.String("type", "", "credential type id, e.g. resident_identity (imi credential types lists them) (required)")
	to := fs.String("to", "", "the resident's DID (required)")
	claimsFile := fs.String("claims", "", "JSON object of claim values (required); derived claims such as age_over_18 are filled in")
	days := fs.Int("days", 0, "validity in days (default: the type's maximum)")
	out := fs.String("out", "", "file to write the credential to, for the resident (required; must not exist)")
	if err := parse(fs, args); err != nil {
		return err
	}
	for _, f := range [][2]string{{"type", *typ}, {"to", *to}, {"claims", *claimsFile}, {"out", *out}} {
		if err := need(f[0], f[1]); err != nil {
			return err
		}
	}
	if *days < 0 {
		return fmt.Errorf("%w: --days must be positive", errUsage)
	}
	if _, err := did.Parse(*to); err != nil {
		return fmt.Errorf("%w: --to %q is not an IMI DID: %v", errUsage, *to, err)
	}
	claims, err := readClaims(*claimsFile)
	if err != nil {
		return err
	}
	k, signer, err := s.load()
	if err != nil {
		return err
	}
	// The output file is claimed before anything is written to the ledger:
	// a status entry reserved for a credential that cannot be saved would
	// be wasted, and an existing file must never be overwritten.
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s already exists; choose another --out (an issued credential is never overwritten)", *out)
		}
		return fmt.Errorf("couldn't create %s: %w", *out, err)
	}
	written := false
	defer func() {
		if !written {
			f.Close()
			os.Remove(*out)
		}
	}()

	cl, err := n.client()
	if err != nil {
		return err
	}
	sub, err := subjectOf(ctx, cl, *to)
	if err != nil {
		return err
	}
	ct, err := cl.CredentialType(ctx, *typ)
	if err != nil {
		if isNotFound(err) {
			return fmt.Errorf("no credential type %q is published (imi credential types lists them)", *typ)
		}
		return explain(err)
	}
	au, err := s.authority(ctx, cl, k)
	if err != nil {
		return err
	}
	if !au.HasRole(ledger.RoleIssuerPrefix + ct.ID) {
		return fmt.Errorf("%s does not hold the role %s%s, so it may not issue %s (%s)", au.ID, ledger.RoleIssuerPrefix, ct.ID, ct.NameEN, ct.NameZH)
	}
	// A credential's status URI is built from the issuer's endpoint; without
	// one no verifier could place it.
	if u, err := url.Parse(au.Endpoint); au.Endpoint == "" || err != nil || u.Host == "" {
		return fmt.Errorf("the ledger records no public endpoint for %s, so verifiers could not locate its status lists; no credential was issued (an authority's endpoint is recorded when the consortium adds it)", au.ID)
	}
	if max := int(ct.MaxValidityDays); *days > max {
		return fmt.Errorf("%w: %s is valid at most %d days; --days %d is too long", errUsage, ct.ID, max, *days)
	}
	lane := uint32(*s.lane)
	is := &credential.Issuer{
		Authority: au,
		Key:       k,
		Type:      ct,
		Fill:      func(ctx context.Context) ([]uint64, error) { return cl.StatusFill(ctx, au.ID) },
		Reserve: func(ctx context.Context, list, index uint32) error {
			_, err := cl.Sign(ctx, k, signer, lane, &tx.ReserveStatus{Type: ct.ID, List: list, Indices: []uint32{index}})
			var p *client.Problem
			if errors.As(err, &p) && p.Reason == ledger.CodeStatusIndexTaken.Name() {
				return credential.ErrIndexTaken
			}
			return explain(err)
		},
		Now:  time.Now,
		Rand: rand.Reader,
	}
	issued, err := is.Issue(ctx, sub, claims, time.Duration(*days)*24*time.Hour)
	if err != nil {
		return fmt.Errorf("couldn't issue the credential: %w", err)
	}
	b, err := jsonIndent(issued)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("couldn't write %s: %w", *out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("couldn't write %s: %w", *out, err)
	}
	written = true
	list, _ := credential.ListOf(issued.StatusURI, au.ID)
	// Claim values are never printed: the terminal and its scrollback are
	// not where personal data should end up.
	fmt.Fprintf(e.stdout, `Issued %s / %s (%s) to %s.
  issuer:   %s / %s (%s)
  valid:    %s to %s
  status:   list %d, index %d of %s (revoke with: imi credential revoke --as %s --list %d --index %d)
Wrote %s. Hand it to the resident (imi wallet add) and delete it here: the issuer keeps no copy.
`, ct.NameZH, ct.NameEN, ct.ID, sub.DID, au.NameZH, au.NameEN, au.ID,
		issued.IssuedAt.Format(time.DateTime+" MST"), issued.ExpiresAt.Format(time.DateTime+" MST"),
		list, issued.StatusIdx, au.ID, au.ID, list, issued.StatusIdx, *out)
	return nil
}

// readClaims reads a JSON object of claim values, refusing duplicate names
// (two parsers could keep different copies).
func readClaims(path string) (map[string]any, error) {
	b, err := readLimited(path, maxClaimsFile)
	if err != nil {
		return nil, err
	}
	v, err := jws.DecodeJSON(b, 4)
	if err != nil {
		return nil, fmt.Errorf("couldn't read %s: %w", path, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s must hold a JSON object of claim names and values", path)
	}
	return m, nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("couldn't read %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("couldn't read %s: %w", path, err)
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil && st.Size() > 0 {
		return nil, fmt.Errorf("couldn't read %s: %w", path, err)
	}
	return b, nil
}

// subjectOf resolves the resident a credential is issued to. The holder key
// bound into the credential is the DID's current key as the ledger lists it,
// not one the caller supplies.
func subjectOf(ctx context.Context, cl *client.Client, d string) (credential.Subject, error) {
	r, err := cl.Resolve(ctx, d, 0, false)
	if err != nil {
		if isNotFound(err) {
			return credential.Subject{}, fmt.Errorf("%s is not registered on the ledger; credentials go only to registered residents", d)
		}
		return credential.Subject{}, explain(err)
	}
	if r.Resolution == nil || r.Document == nil {
		return credential.Subject{}, fmt.Errorf("the node sent no DID document for %s", d)
	}
	if r.Metadata.Kind != "resident" {
		return credential.Subject{}, fmt.Errorf("%s is an authority's DID, not a resident's", d)
	}
	if r.Metadata.Deactivated {
		reason := r.Metadata.DeactivationReason
		if reason == "" {
			reason = "no reason recorded"
		}
		return credential.Subject{}, fmt.Errorf("%s was deactivated (%s); a credential cannot be issued to it", d, reason)
	}
	vm := r.Document.VerificationMethod
	if len(vm) != 1 || vm[0].PublicKeyJwk.Kty != "OKP" || vm[0].PublicKeyJwk.Crv != "Ed25519" {
		return credential.Subject{}, fmt.Errorf("the DID document of %s does not show one Ed25519 key", d)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(vm[0].PublicKeyJwk.X)
	if err != nil {
		return credential.Subject{}, fmt.Errorf("the DID document of %s has a malformed key", d)
	}
	pub, err := key.PublicFromBytes(raw)
	if err != nil {
		return credential.Subject{}, fmt.Errorf("the DID document of %s: %w", d, err)
	}
	return credential.Subject{DID: r.Document.ID, Key: pub, Deactivated: r.Metadata.Deactivated}, nil
}

// authority returns the ledger record of the signing authority: by --as id,
// or for --key the authority whose current key it is.
func (s signerOpt) authority(ctx context.Context, cl *client.Client, k key.Private) (*ledger.Authority, error) {
	if *s.keyFile == "" {
		au, err := cl.Authority(ctx, *s.as)
		if err != nil {
			if isNotFound(err) {
				return nil, fmt.Errorf("%s is not an authority on the ledger (imi authority list shows them)", *s.as)
			}
			return nil, explain(err)
		}
		if !au.Key.Equal(k.Public()) {
			return nil, fmt.Errorf("the key in %s's key file is not %s's current key on the ledger", *s.home, au.ID)
		}
		return au, nil
	}
	list, err := cl.Authorities(ctx)
	if err != nil {
		return nil, explain(err)
	}
	for i := range list.Authorities {
		if list.Authorities[i].Key.Equal(k.Public()) {
			return &list.Authorities[i], nil
		}
	}
	return nil, fmt.Errorf("the key in %s is not the current key of any authority (imi authority list shows them)", *s.keyFile)
}

func isNotFound(err error) bool {
	var p *client.Problem
	return errors.As(err, &p) && p.Status == http.StatusNotFound
}

// setStatus is revoke, suspend and unsuspend.
func setStatus(verb string) func(context.Context, *env, []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		c := find("credential " + verb)
		fs := c.flags(e)
		s := addSigner(fs, e)
		n := addNode(fs.String, e)
		credFile := fs.String("credential", "", "the issued credential file, to read its status entry from")
		list := fs.Int64("list", -1, "status list number (with --index, when the credential file is not at hand)")
		index := fs.Int64("index", -1, "status entry index in the list")
		if err := parse(fs, args); err != nil {
			return err
		}
		var ref tx.StatusRef
		switch {
		case *credFile != "" && (*list >= 0 || *index >= 0):
			return fmt.Errorf("%w: give either --credential or --list and --index, not both", errUsage)
		case *credFile != "":
			var is credential.Issued
			if err := readJSONFile(*credFile, &is); err != nil {
				return err
			}
			k, _, err := s.load()
			if err != nil {
				return err
			}
			// Status entries are per issuer: another authority's list and
			// index would name one of the signer's own credentials.
			if is.IssuerDID != did.FromKey(k.Public()).String() {
				return fmt.Errorf("%s was issued by %s, not by the signing authority; only its issuer can %s it", *credFile, is.Issuer, verb)
			}
			l, err := credential.ListOf(is.StatusURI, is.Issuer)
			if err != nil {
				return err
			}
			ref = tx.StatusRef{List: l, Index: is.StatusIdx}
		case *list >= 0 && *index >= 0:
			if *list >= ledger.MaxStatusLists || *index >= ledger.StatusListSize {
				return fmt.Errorf("%w: --list is 0 to %d and --index 0 to %d", errUsage, ledger.MaxStatusLists-1, ledger.StatusListSize-1)
			}
			ref = tx.StatusRef{List: uint32(*list), Index: uint32(*index)}
		default:
			return fmt.Errorf("%w: name the credential with --credential FILE, or --list and --index", errUsage)
		}
		var body tx.Body
		var done string
		switch verb {
		case "revoke":
			body, done = &tx.Revoke{StatusRef: ref}, "Revoked"
		case "suspend":
			body, done = &tx.Suspend{StatusRef: ref}, "Suspended"
		default:
			body, done = &tx.Unsuspend{StatusRef: ref}, "Unsuspended"
		}
		res, _, err := s.submit(ctx, n, body)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s the credential at status list %d, index %d, at height %d (tx %s). Verifiers see it from now on.\n", done, ref.List, ref.Index, res.Height, res.Hash)
		return nil
	}
}

// jsonIndent encodes v for a file a person may open: indented, with
// Chinese text and "<" left as they are.
func jsonIndent(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// printTable prints rows in aligned columns. text/tabwriter counts a Chinese
// character as one column where a terminal shows two.
func printTable(w io.Writer, indent string, rows [][]string) {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], displayWidth(c))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		b.WriteString(indent)
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 && widths[i] > 0 {
				b.WriteString(strings.Repeat(" ", widths[i]-displayWidth(c)+2))
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// displayWidth is the number of terminal columns s takes: two for East
// Asian wide characters, one for the rest.
func displayWidth(s string) int {
	n := 0
	for _, r := range s {
		switch {
		case r >= 0x1100 && r <= 0x115F, r >= 0x2E80 && r <= 0xA4CF, r >= 0xAC00 && r <= 0xD7A3,
			r >= 0xF900 && r <= 0xFAFF, r >= 0xFE30 && r <= 0xFE4F, r >= 0xFF00 && r <= 0xFF60, r >= 0xFFE0 && r <= 0xFFE6:
			n += 2
		default:
			n++
		}
	}
	return n
}
