package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/imi-city/imi/internal/authn"
	"github.com/imi-city/imi/internal/client"
	"github.com/imi-city/imi/internal/consent"
	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/district"
	"github.com/imi-city/imi/internal/httpapi"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/pseudonym"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/tx"
	"github.com/imi-city/imi/internal/wallet"
)

// Services, applications, consents and the access log: what a service
// authority's clerk, a registrar and a resident type.

// commitWait bounds how long a command waits for a transaction the node
// accepted but had not committed when it answered.
const commitWait = 30 * time.Second

func init() {
	register(&command{
		name:     "service list",
		summary:  "list the published services: who asks, for what, why, and for how long",
		usage:    "[--node URL] [--json]",
		examples: `  imi service list`,
		run:      serviceList,
	})
	register(&command{
		name:    "service show",
		summary: "show one service: purpose, legal basis, claims asked (sensitive marked), retention, consent modes, form",
		usage:   "ID [--node URL] [--json]",
		examples: `  imi service show pension_application
  imi service show utility_account_opening --json`,
		run: serviceShow,
	})
	register(&command{
		name:    "service open",
		summary: "open an application for a service (as its authority); the resident answers it with imi apply",
		usage:   "(--as ID | --key FILE) --service ID [--node URL]",
		examples: `  imi service open --as cc-hrss --service pension_application
  # hand the printed application id to the resident: imi apply --wallet W --application ID`,
		run: serviceOpen,
	})
	register(&command{
		name:     "service received",
		summary:  "list the applications the authority received, with the verified values and who vouches for each",
		usage:    "(--as ID | --key FILE) [--node URL] [--json]",
		examples: `  imi service received --as cc-hrss`,
		run:      serviceReceived,
	})
	register(&command{
		name:    "service read",
		summary: "back-office read of a resident's claims from their issuing authority, under a standing consent",
		usage:   "(--as ID | --key FILE) --from SOURCE --subject PSN --service ID --claims TYPE.CLAIM[,...] [--node URL]",
		examples: `  imi service read --as cc-hrss --from cc-psb --subject psn:… --service pension_application \
      --claims resident_identity.registered_address
  # --subject is the pseudonym imi service received shows; a refusal is recorded and exits 1`,
		run: serviceRead,
	})
	register(&command{
		name:    "service check",
		summary: "ask whether a read would be allowed now under the resident's consent; nothing is read or recorded",
		usage:   "(--as ID | --key FILE) --subject PSN --service ID --claims TYPE.CLAIM[,...] [--from SOURCE] [--node URL]",
		examples: `  imi service check --as cc-hrss --subject psn:… --service pension_application \
      --claims resident_identity.registered_address --from cc-psb`,
		run: serviceCheck,
	})
	register(&command{
		name:    "service access",
		summary: "list the access records in which the authority read, or released, residents' data",
		usage:   "(--as ID | --key FILE) [--from-height H] [--limit N] [--node URL] [--json]",
		examples: `  imi service access --as cc-hrss
  imi service access --as cc-psb --from-height 1200 --limit 50`,
		run: serviceAccess,
	})
	register(&command{
		name:    "registry put",
		summary: "store the authority's data of record about a resident, released only under consent",
		usage:   "(--as ID | --key FILE) --did DID --type T --claims FILE.json [--node URL]",
		examples: `  imi registry put --as cc-psb --did did:imi:… --type resident_identity --claims ./alice-claims.json
  # the values stay in this node's off-chain register; the ledger never sees them`,
		run: registryPut,
	})
	register(&command{
		name:    "apply",
		summary: "answer an application: see the form filled from your wallet, then approve all of it, or decline",
		usage:   "--wallet FILE --application ID [--mode one_time|standing] [--days N] [--omit FIELD,...] [--set FIELD=VALUE ...] [--guardian-wallet FILE] [--yes | --decline] [--node URL]",
		examples: `  imi apply --wallet ./alice.wallet --application Xk3…
  imi apply --wallet ./alice.wallet --application Xk3… --mode standing --days 730 \
      --set bank_account=6222020200112233445 --omit contribution_years
  imi apply --wallet ./alice.wallet --application Xk3… --decline    # the service keeps nothing`,
		run: apply,
	})
	register(&command{
		name:     "consent list",
		summary:  "list the consents you gave, under every one of your pseudonyms",
		usage:    "--wallet FILE [--node URL] [--json]",
		examples: `  imi consent list --wallet ./alice.wallet`,
		run:      consentList,
	})
	register(&command{
		name:    "consent revoke",
		summary: "withdraw your consent to a service; reads under it are refused from the next block on",
		usage:   "--wallet FILE --service ID [--guardian-wallet FILE] [--node URL]",
		examples: `  imi consent revoke --wallet ./alice.wallet --service pension_application
  imi consent revoke --wallet ./minnie.wallet --guardian-wallet ./mum.wallet --service medical_insurance_enrolment`,
		run: consentRevoke,
	})
	register(&command{
		name:    "log",
		summary: "your access log: every read of your data, allowed or denied; --verify checks each against a signed block",
		usage:   "--wallet FILE [--verify] [--node URL] [--json]",
		examples: `  imi log --wallet ./alice.wallet
  imi log --wallet ./alice.wallet --verify    # a Merkle proof per record, against a header the validators signed`,
		run: accessLog,
	})
	register(&command{
		name:    "registrar delegate",
		summary: "record, after an in-person check, that a guardian may act for a ward",
		usage:   "(--as ID | --key FILE) --guardian DID --ward DID --basis minor|adult_incapacity|adult_assisted --scope '*'|SVC[,SVC...] --days N --reference REF [--guardian-consent]",
		examples: `  imi registrar delegate --as cc-psb --guardian did:imi:… --ward did:imi:… --basis minor \
      --scope '*' --days 2190 --reference CC-PSB/2026/0412 --guardian-consent
  # --guardian-consent: the ward (under 14) cannot consent alone (PIPL Art. 31)`,
		run: registrarDelegate,
	})
	register(&command{
		name:     "registrar end-delegation",
		summary:  "end a guardian's delegation",
		usage:    "(--as ID | --key FILE) --ward DID --id ID [--node URL]",
		examples: `  imi registrar end-delegation --as cc-psb --ward did:imi:… --id 3f9a…`,
		run:      registrarEndDelegation,
	})
}

// addAuthorityKey is --as ID / --key FILE for requests an authority signs
// over HTTP: no sequence lane is involved.
func addAuthorityKey(fs interface {
	String(string, string, string) *string
}, e *env) signerOpt {
	return signerOpt{
		as:      fs.String("as", "", "act as this authority, with its key from --home's keys/ (e.g. cc-hrss)"),
		keyFile: fs.String("key", "", "sign with this authority key file"),
		home:    fs.String("home", defaultHome(e), "node home holding keys/ (for --as)"),
		lane:    new(uint),
	}
}

// identity loads the signing key and returns the authority id it belongs to
// on the ledger.
func (s signerOpt) identity(ctx context.Context, cl *client.Client) (string, key.Private, error) {
	k, _, err := s.load()
	if err != nil {
		return "", key.Private{}, err
	}
	au, err := s.authority(ctx, cl, k)
	if err != nil {
		return "", key.Private{}, err
	}
	return au.ID, k, nil
}

// directory names authorities, services and claims in both languages.
type directory struct {
	authorities map[string]*ledger.Authority
	services    map[string]*ledger.Service
	types       []ledger.CredentialType
}

func loadDirectory(ctx context.Context, cl *client.Client) (*directory, error) {
	d := &directory{authorities: map[string]*ledger.Authority{}, services: map[string]*ledger.Service{}}
	au, err := cl.Authorities(ctx)
	if err != nil {
		return nil, explain(err)
	}
	for i := range au.Authorities {
		d.authorities[au.Authorities[i].ID] = &au.Authorities[i]
	}
	sv, err := cl.Services(ctx)
	if err != nil {
		return nil, explain(err)
	}
	for i := range sv.Services {
		d.services[sv.Services[i].ID] = &sv.Services[i]
	}
	ct, err := cl.CredentialTypes(ctx)
	if err != nil {
		return nil, explain(err)
	}
	d.types = ct.Types
	return d, nil
}

func (d *directory) authority(id string) string {
	if a := d.authorities[id]; a != nil {
		return fmt.Sprintf("%s / %s (%s)", a.NameZH, a.NameEN, id)
	}
	return id
}

func (d *directory) service(id string) string {
	if s := d.services[id]; s != nil {
		return fmt.Sprintf("%s / %s (%s)", s.NameZH, s.NameEN, id)
	}
	return id
}

// claim returns the claim's spec, if its type is published.
func (d *directory) claim(c tx.ClaimRef) (tx.ClaimSpec, bool) {
	for i := range d.types {
		if d.types[i].ID == c.Type {
			return d.types[i].Claim(c.Claim)
		}
	}
	return tx.ClaimSpec{}, false
}

func (d *directory) sensitive(c tx.ClaimRef) bool {
	return service.Sensitivity(d.types)(c)
}

// claimNames lists claim references, marking sensitive ones.
func (d *directory) claimNames(cs []tx.ClaimRef) string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		s := c.String()
		if d.sensitive(c) {
			s += " (敏感/sensitive)"
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ", ")
}

// when shows a time in the local zone, to the second.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

func serviceList(ctx context.Context, e *env, args []string) error {
	c := find("service list")
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
	d, err := loadDirectory(ctx, cl)
	if err != nil {
		return err
	}
	list := make([]*ledger.Service, 0, len(d.services))
	for _, s := range d.services {
		list = append(list, s)
	}
	slices.SortFunc(list, func(a, b *ledger.Service) int { return strings.Compare(a.ID, b.ID) })
	if *asJSON {
		return printJSON(e, list)
	}
	if len(list) == 0 {
		fmt.Fprintln(e.stdout, "No services are published.")
		return nil
	}
	for i, s := range list {
		if i > 0 {
			fmt.Fprintln(e.stdout)
		}
		printService(e.stdout, d, s, false)
	}
	fmt.Fprintln(e.stdout, "\nimi service show ID shows a service's legal basis and form.")
	return nil
}

func serviceShow(ctx context.Context, e *env, args []string) error {
	c := find("service show")
	fs := c.flags(e)
	n := addNode(fs.String, e)
	asJSON := fs.Bool("json", false, "print the raw JSON")
	id, rest := flagsThenArg(args)
	if err := parse(fs, rest); err != nil {
		return err
	}
	if id == "" {
		id = fs.Arg(0)
	}
	if id == "" {
		return fmt.Errorf("%w: name the service (imi service list shows them)", errUsage)
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	s, err := cl.Service(ctx, id)
	if err != nil {
		if isNotFound(err) {
			return fmt.Errorf("no service %q is published (imi service list shows them)", id)
		}
		return explain(err)
	}
	if *asJSON {
		return printJSON(e, s)
	}
	d, err := loadDirectory(ctx, cl)
	if err != nil {
		return err
	}
	printService(e.stdout, d, s, true)
	return nil
}

// printService shows what a service asks for and why; full adds the legal
// basis, the claims' names and the form.
func printService(w io.Writer, d *directory, s *ledger.Service, full bool) {
	fmt.Fprintf(w, "%s — %s / %s (version %d)\n", s.ID, s.NameZH, s.NameEN, s.Version)
	rows := [][]string{
		{"authority:", d.authority(s.Authority)},
		{"purpose:", s.PurposeZH},
		{"", s.PurposeEN},
	}
	if full {
		rows = append(rows, []string{"legal basis:", s.LegalBasis})
	}
	rows = append(rows,
		[]string{"retention:", fmt.Sprintf("%d days after the purpose is fulfilled / 保存%d天", s.RetentionDays, s.RetentionDays)},
		[]string{"consent:", modesText(s)},
	)
	if !full {
		rows = append(rows,
			[]string{"required:", d.claimNames(s.Required)},
			[]string{"optional:", d.claimNames(s.Optional)})
	}
	printTable(w, "  ", rows)
	if !full {
		return
	}
	for _, part := range []struct {
		title string
		refs  []tx.ClaimRef
	}{{"required / 必需", s.Required}, {"optional / 可选", s.Optional}} {
		fmt.Fprintf(w, "  %s:\n", part.title)
		if len(part.refs) == 0 {
			fmt.Fprintln(w, "    -")
			continue
		}
		var rows [][]string
		for _, c := range part.refs {
			label := ""
			if spec, ok := d.claim(c); ok {
				label = spec.NameZH + " / " + spec.NameEN
			}
			mark := ""
			if d.sensitive(c) {
				mark = "敏感/sensitive"
			}
			rows = append(rows, []string{c.String(), label, mark})
		}
		printTable(w, "    ", rows)
	}
	fmt.Fprintln(w, "  form / 表单:")
	var form [][]string
	for _, f := range s.Form {
		from := "typed in by the resident / 自填"
		if f.Claim != (tx.ClaimRef{}) {
			from = "← " + f.Claim.String()
		}
		form = append(form, []string{f.Name, f.LabelZH + " / " + f.LabelEN, from})
	}
	printTable(w, "    ", form)
}

func modesText(s *ledger.Service) string {
	var parts []string
	for _, m := range s.Modes {
		switch m {
		case tx.ModeOneTime:
			parts = append(parts, "one_time (一次性)")
		case tx.ModeStanding:
			parts = append(parts, fmt.Sprintf("standing (长期), at most %d days", s.MaxStandingDays))
		default:
			parts = append(parts, m)
		}
	}
	return strings.Join(parts, "; ")
}

func serviceOpen(ctx context.Context, e *env, args []string) error {
	c := find("service open")
	fs := c.flags(e)
	s := addAuthorityKey(fs, e)
	n := addNode(fs.String, e)
	svcID := fs.String("service", "", "the service id (required; imi service list shows them)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("service", *svcID); err != nil {
		return err
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	id, k, err := s.identity(ctx, cl)
	if err != nil {
		return err
	}
	a, err := cl.OpenApplication(ctx, id, k, *svcID)
	if err != nil {
		return explain(err)
	}
	fmt.Fprintf(e.stdout, `Opened application %s for %s (version %d).
  audience: %s
  expires:  %s (%s from now); an application nobody submits leaves nothing behind
The resident answers it with:
  imi apply --wallet WALLET --application %s
`, a.ID, a.Service, a.Version, a.Audience, when(a.Expires), time.Until(a.Expires).Round(time.Minute), a.ID)
	return nil
}

func serviceReceived(ctx context.Context, e *env, args []string) error {
	c := find("service received")
	fs := c.flags(e)
	s := addAuthorityKey(fs, e)
	n := addNode(fs.String, e)
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	id, k, err := s.identity(ctx, cl)
	if err != nil {
		return err
	}
	list, err := cl.ReceivedApplications(ctx, id, k)
	if err != nil {
		return explain(err)
	}
	if *asJSON {
		return printJSON(e, list)
	}
	if len(list) == 0 {
		fmt.Fprintf(e.stdout, "%s has received no applications.\n", id)
		return nil
	}
	d, err := loadDirectory(ctx, cl)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s has received %d application(s).\n", d.authority(id), len(list))
	for _, a := range list {
		fmt.Fprintf(e.stdout, "\nApplication %s — %s, version %d\n", a.ID, d.service(a.Service), a.Version)
		rows := [][]string{
			{"received:", fmt.Sprintf("%s, access recorded at height %d", when(*a.Received), a.Height)},
			{"subject:", a.Subject + "  (the resident's pseudonym towards " + a.Authority + ": use it with imi service read)"},
			{"consent:", a.Consent},
			{"access:", base64.RawURLEncoding.EncodeToString(a.AccessID)},
		}
		if a.Guardian {
			rows = append(rows, []string{"guardian:", "submitted by the resident's registered guardian / 由监护人代为提交"})
		}
		printTable(e.stdout, "  ", rows)
		fmt.Fprintln(e.stdout, "  values:")
		labels := map[string]string{}
		if svc := d.services[a.Service]; svc != nil {
			for _, f := range svc.Form {
				labels[f.Name] = f.LabelZH + " / " + f.LabelEN
			}
		}
		var vals [][]string
		for _, v := range a.Values {
			label := labels[v.Name]
			if label == "" {
				label = v.Name
			}
			src := "self-declared / 自填 (no authority vouches for it)"
			if v.Verified {
				src = "verified by " + d.authority(v.Source)
			}
			vals = append(vals, []string{label, claimValue(v.Value), src})
		}
		printTable(e.stdout, "    ", vals)
	}
	return nil
}

// parseClaimRefs reads "type.claim,type.claim", sorted and without repeats
// as a read request needs them.
func parseClaimRefs(s string) ([]tx.ClaimRef, error) {
	var out []tx.ClaimRef
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		typ, claim, ok := strings.Cut(part, ".")
		if !ok || typ == "" || claim == "" {
			return nil, fmt.Errorf("%w: --claims %q: name each claim as TYPE.CLAIM, e.g. resident_identity.registered_address", errUsage, part)
		}
		out = append(out, tx.ClaimRef{Type: typ, Claim: claim})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: --claims names no claim", errUsage)
	}
	slices.SortFunc(out, tx.ClaimRef.Compare)
	return slices.Compact(out), nil
}

// errDenied marks a read the source refused; the refusal is on the ledger.
var errDenied = errors.New("access denied")

func serviceRead(ctx context.Context, e *env, args []string) error {
	c := find("service read")
	fs := c.flags(e)
	s := addAuthorityKey(fs, e)
	n := addNode(fs.String, e)
	from := fs.String("from", "", "the authority that holds the data of record, e.g. cc-psb (required)")
	subject := fs.String("subject", "", "the resident's pseudonym towards you, psn:… as imi service received shows it (required)")
	svcID := fs.String("service", "", "the service the consent was given to (required)")
	claimList := fs.String("claims", "", "TYPE.CLAIM[,TYPE.CLAIM...] to read, within the consent (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	for _, f := range [][2]string{{"from", *from}, {"subject", *subject}, {"service", *svcID}, {"claims", *claimList}} {
		if err := need(f[0], f[1]); err != nil {
			return err
		}
	}
	if _, err := pseudonym.Parse(*subject); err != nil {
		return fmt.Errorf("%w: --subject: %v", errUsage, err)
	}
	claims, err := parseClaimRefs(*claimList)
	if err != nil {
		return err
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	reader, k, err := s.identity(ctx, cl)
	if err != nil {
		return err
	}
	src, err := cl.Authority(ctx, *from)
	if err != nil {
		if isNotFound(err) {
			return fmt.Errorf("%s is not an authority on the ledger (imi authority list shows them)", *from)
		}
		return explain(err)
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return err
	}
	req := &service.ReadRequest{ID: id, Subject: *subject, Service: *svcID, Claims: claims}
	pkg, err := cl.BackOfficeRead(ctx, reader, k, src.ID, req)
	var p *client.Problem
	if errors.As(err, &p) && p.Status == http.StatusForbidden {
		if en, zh := ledger.DenyReasonText(p.Reason); en != "denied" {
			fmt.Fprintf(e.stdout, "DENIED (%s): %s\n  拒绝：%s\n  The attempt is recorded on the ledger, in the resident's access log and in yours (imi service access).\n", p.Reason, en, zh)
			return fmt.Errorf("%w: %s", errDenied, p.Reason)
		}
	}
	if err != nil {
		return explain(err)
	}
	me, err := cl.Authority(ctx, reader)
	if err != nil {
		return explain(err)
	}
	payload, err := service.OpenRelease(pkg, src, me)
	if err != nil {
		return err
	}
	if payload.Request != base64.RawURLEncoding.EncodeToString(id) || payload.Subject != *subject || payload.Service != *svcID {
		return errors.New("the released package answers another request; it was not used")
	}
	fmt.Fprintf(e.stdout, "Released by %s under consent %s; the access is recorded at height %d.\n", src.ID, payload.Consent, payload.Height)
	var rows [][]string
	for _, c := range claims {
		v, ok := payload.Claims[c.String()]
		if !ok {
			return fmt.Errorf("the released package lacks %s", c)
		}
		rows = append(rows, []string{c.String(), claimValue(v)})
	}
	printTable(e.stdout, "  ", rows)
	return nil
}

func serviceCheck(ctx context.Context, e *env, args []string) error {
	c := find("service check")
	fs := c.flags(e)
	s := addAuthorityKey(fs, e)
	n := addNode(fs.String, e)
	subject := fs.String("subject", "", "the resident's pseudonym towards you, psn:… (required)")
	svcID := fs.String("service", "", "the service the consent was given to (required)")
	claimList := fs.String("claims", "", "TYPE.CLAIM[,TYPE.CLAIM...] you would read (required)")
	from := fs.String("from", "", "the source you would read from in the back office (default: a presentation by the resident)")
	if err := parse(fs, args); err != nil {
		return err
	}
	for _, f := range [][2]string{{"subject", *subject}, {"service", *svcID}, {"claims", *claimList}} {
		if err := need(f[0], f[1]); err != nil {
			return err
		}
	}
	if _, err := pseudonym.Parse(*subject); err != nil {
		return fmt.Errorf("%w: --subject: %v", errUsage, err)
	}
	claims, err := parseClaimRefs(*claimList)
	if err != nil {
		return err
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	id, k, err := s.identity(ctx, cl)
	if err != nil {
		return err
	}
	channel := tx.ChannelPresentation
	if *from != "" {
		channel = tx.ChannelBackOffice
	}
	r, err := cl.ConsentCheck(ctx, id, k, &httpapi.CheckRequest{Subject: *subject, Service: *svcID, Claims: claims, Channel: channel, Source: *from})
	if err != nil {
		return explain(err)
	}
	if !r.Allowed {
		fmt.Fprintf(e.stdout, "WOULD BE DENIED (%s): %s / %s (as of height %d; nothing was recorded)\n", r.Reason, r.Message, r.MessageZH, r.Height)
		return fmt.Errorf("%w: %s", errDenied, r.Reason)
	}
	fmt.Fprintf(e.stdout, "Allowed under consent %s as of height %d. Nothing was read or recorded; the read itself is judged and recorded again.\n", r.Consent, r.Height)
	return nil
}

func serviceAccess(ctx context.Context, e *env, args []string) error {
	c := find("service access")
	fs := c.flags(e)
	s := addAuthorityKey(fs, e)
	n := addNode(fs.String, e)
	from := fs.Int64("from-height", 0, "list records from this block height on")
	limit := fs.Int("limit", 0, "list at most this many records (default: the node's maximum, 1000)")
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *from < 0 || *limit < 0 {
		return fmt.Errorf("%w: --from-height and --limit are not negative", errUsage)
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	id, k, err := s.identity(ctx, cl)
	if err != nil {
		return err
	}
	r, err := cl.AuthorityAccess(ctx, id, k, *from, *limit)
	if err != nil {
		return explain(err)
	}
	if *asJSON {
		return printJSON(e, r)
	}
	if len(r.Records) == 0 {
		fmt.Fprintf(e.stdout, "No access records of %s (as of height %d).\n", id, r.Height)
		return nil
	}
	d, err := loadDirectory(ctx, cl)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%d access record(s) in which %s read or released residents' data (as of height %d):\n", len(r.Records), id, r.Height)
	for i := range r.Records {
		printAccess(e.stdout, d, &r.Records[i], true)
	}
	return nil
}

// printAccess shows one access record: who read which claims (names only),
// for which service, how, and the ledger's verdict.
func printAccess(w io.Writer, d *directory, a *ledger.Access, showSubject bool) {
	how := "by presentation (the resident submitted it) / 居民提交"
	if a.Channel == tx.ChannelBackOffice {
		how = "back office, from " + d.authority(a.Source) + " / 后台调取"
	}
	outcome := "allowed / 允许"
	if a.Outcome != tx.OutcomeAllowed {
		en, zh := ledger.DenyReasonText(a.Reason)
		outcome = fmt.Sprintf("DENIED (%s): %s / %s", a.Reason, en, zh)
	}
	fmt.Fprintf(w, "\n%s  height %d  %s\n", when(a.At.Time), a.At.Height, outcome)
	rows := [][]string{
		{"reader:", d.authority(a.Reader)},
		{"channel:", how},
		{"service:", d.service(a.Service)},
		{"claims:", d.claimNames(a.Claims)},
	}
	if showSubject {
		rows = append(rows, []string{"subject:", a.Subject})
	}
	c := a.Consent
	if c == "" {
		c = "none / 无"
	}
	rows = append(rows, []string{"consent:", c}, []string{"record:", base64.RawURLEncoding.EncodeToString(a.ID)})
	if a.ByGuardian != "" {
		rows = append(rows, []string{"guardian:", "under a consent your guardian gave / 监护人代为同意 (" + a.ByGuardian + ")"})
	}
	printTable(w, "  ", rows)
}

func registryPut(ctx context.Context, e *env, args []string) error {
	c := find("registry put")
	fs := c.flags(e)
	s := addAuthorityKey(fs, e)
	n := addNode(fs.String, e)
	d := fs.String("did", "", "the resident's DID (required)")
	typ := fs.String("type", "", "credential type of the record, which this authority issues (required)")
	claimsFile := fs.String("claims", "", "JSON object of the record's claim values (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	for _, f := range [][2]string{{"did", *d}, {"type", *typ}, {"claims", *claimsFile}} {
		if err := need(f[0], f[1]); err != nil {
			return err
		}
	}
	if _, err := did.Parse(*d); err != nil {
		return fmt.Errorf("%w: --did %q is not an IMI DID: %v", errUsage, *d, err)
	}
	claims, err := readClaims(*claimsFile)
	if err != nil {
		return err
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	id, k, err := s.identity(ctx, cl)
	if err != nil {
		return err
	}
	if err := cl.PutRecord(ctx, id, k, *d, *typ, claims); err != nil {
		return explain(err)
	}
	// Values are not echoed, as with credential issue.
	fmt.Fprintf(e.stdout, "Stored %s's %s record of %s (%d item(s)) in its node's off-chain register.\nIt is released only to a service the resident consented to, and each release is recorded in the resident's access log.\n",
		id, *typ, *d, len(claims))
	return nil
}

// setFlag collects repeated --set FIELD=VALUE.
type setFlag map[string]string

func (s setFlag) String() string { return "" }

func (s setFlag) Set(v string) error {
	name, val, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(name) == "" {
		return errors.New("use FIELD=VALUE")
	}
	s[strings.TrimSpace(name)] = val
	return nil
}

// maxTyped is what the desk accepts for one typed-in value.
const maxTyped = 256

func apply(ctx context.Context, e *env, args []string) error {
	c := find("apply")
	fs := c.flags(e)
	path := fs.String("wallet", "", "your wallet file (required to approve)")
	n := addNode(fs.String, e)
	appID := fs.String("application", "", "the application id the service gave you (required)")
	mode := fs.String("mode", "", "consent mode: one_time or standing (default: one_time if the service offers it)")
	days := fs.Uint("days", 0, "how many days a standing consent lasts (required with --mode standing)")
	omit := fs.String("omit", "", "comma-separated optional fields you do not want to share")
	sets := setFlag{}
	fs.Var(sets, "set", "type in a value for a field nothing verified fills: FIELD=VALUE (repeatable)")
	guardianPath := fs.String("guardian-wallet", "", "the wallet of your registered guardian, who co-signs (when the registrar recorded that you consent only with a guardian)")
	yes := fs.Bool("yes", false, "approve everything shown, sensitive items included, without asking")
	decline := fs.Bool("decline", false, "decline the application: nothing is sent and the service keeps nothing")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("application", *appID); err != nil {
		return err
	}
	if *yes && *decline {
		return fmt.Errorf("%w: --yes and --decline contradict each other", errUsage)
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	if *decline {
		if err := cl.DeclineApplication(ctx, *appID); err != nil {
			return explain(err)
		}
		fmt.Fprintf(e.stdout, "Declined application %s. Nothing was sent; the service keeps nothing of it. / 已拒绝，未提供任何信息。\n", *appID)
		return nil
	}
	if err := need("wallet", *path); err != nil {
		return err
	}
	ar, err := cl.Application(ctx, *appID)
	if err != nil {
		if isNotFound(err) {
			return fmt.Errorf("no open application %s: it does not exist, or it expired (an application waits %s)", *appID, service.ApplicationLife)
		}
		return explain(err)
	}
	if ar.Application == nil || ar.Service == nil {
		return fmt.Errorf("application %s is %s: it can no longer be answered", *appID, ar.Status)
	}
	a, svc := ar.Application, ar.Service
	ch, err := consentChoice(svc, *mode, *days)
	if err != nil {
		return err
	}
	d, err := loadDirectory(ctx, cl)
	if err != nil {
		return err
	}
	p := newPrompter(e)
	w, pass, err := openWallet(p, *path)
	if err != nil {
		return err
	}
	defer w.Wipe()
	guardian, err := openGuardian(p, *guardianPath)
	if err != nil {
		return err
	}
	if guardian != nil {
		defer guardian.Contents.Wipe()
		ch.Guardian = guardian
	}
	now := time.Now()
	form := consent.Prefill(&svc.RegisterService, svc.Version, service.Held(w, now), service.Sensitivity(d.types))
	if err := fillChoice(form, &ch, *omit, sets); err != nil {
		return err
	}
	printForm(e.stdout, d, a, svc, form, &ch)
	if guardian != nil {
		fmt.Fprintf(e.stdout, "Your guardian %s co-signs this consent; your log will mark it. / 由监护人共同签署。\n\n", guardian.Contents.DID)
	}
	if len(form.Missing) > 0 {
		var names []string
		for _, m := range form.Missing {
			names = append(names, m.String()+" (from "+d.authority(issuerOf(d, m))+")")
		}
		return fmt.Errorf("you hold no verified value for %s; ask for that credential first. Nothing was sent", strings.Join(names, ", "))
	}
	sensitive := sensitiveShared(form, ch.Omit)
	if len(sensitive) > 0 && !*yes {
		ok, err := confirm(p, "Share the sensitive items above with "+svc.Authority+"? / 是否同意提供上述敏感个人信息？")
		if err != nil {
			return err
		}
		if !ok {
			var required []string
			for _, f := range sensitive {
				if f.Required {
					required = append(required, f.Name)
				} else {
					ch.Omit = append(ch.Omit, f.Name)
				}
			}
			if len(required) > 0 {
				return fmt.Errorf("the service requires %s; without them it cannot take the application. Nothing was sent (imi apply --decline declines it)", strings.Join(required, ", "))
			}
			fmt.Fprintln(e.stdout, "The optional sensitive items will not be shared. / 不提供可选的敏感信息。")
		}
	}
	if !*yes {
		ok, err := confirm(p, "Approve all? / 全部同意？")
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("not approved; nothing was sent. The application stays open until %s (imi apply --decline declines it)", when(a.Expires))
		}
	}
	secret, created, err := service.PseudonymSecret(w)
	if err != nil {
		return err
	}
	if created {
		// Saved before anything is signed with it: a pseudonym the wallet
		// could not derive again would hide the consent from its owner.
		if err := wallet.Save(*path, w, pass, wallet.DefaultParams); err != nil {
			return fmt.Errorf("couldn't save the wallet's new pseudonym secret; nothing was sent: %w", err)
		}
	}
	psnKey, err := pseudonym.Derive(secret, svc.Authority)
	if err != nil {
		return err
	}
	psn := pseudonym.FromKey(psnKey.Public()).String()
	if ch.Seq, err = cl.NextSeq(ctx, psn, 0); err != nil {
		return explain(err)
	}
	st, err := cl.Status(ctx)
	if err != nil {
		return explain(err)
	}
	kem := map[string][]byte{}
	for id, au := range d.authorities {
		kem[id] = au.KEMKey
	}
	sub, err := service.Approve(w, secret, a, svc, form, kem, st.ChainID, ch, now)
	if err != nil {
		return err
	}
	res, err := cl.SubmitApplication(ctx, a.ID, sub)
	if err != nil {
		return explain(err)
	}
	fmt.Fprintf(e.stdout, `Submitted. %s received your application at height %d.
  consent:   %s (%s)
  pseudonym: %s (your name towards %s; no other authority sees it)
Your access log shows this and every later read: imi log --wallet %s
Withdraw the consent with: imi consent revoke --wallet %s --service %s
`, svc.Authority, res.Height, res.Consent, consentTerm(ch.Mode, ch.Days), res.Subject, svc.Authority, *path, *path, svc.ID)
	return nil
}

// consentChoice checks the mode and duration against what the service
// offers.
func consentChoice(svc *ledger.Service, mode string, days uint) (service.Choice, error) {
	if mode == "" {
		mode = tx.ModeOneTime
		if !slices.Contains(svc.Modes, tx.ModeOneTime) {
			mode = tx.ModeStanding
		}
	}
	if !slices.Contains(svc.Modes, mode) {
		return service.Choice{}, fmt.Errorf("%w: %s offers %s consent, not %q", errUsage, svc.ID, strings.Join(svc.Modes, " or "), mode)
	}
	switch {
	case mode == tx.ModeOneTime && days != 0:
		return service.Choice{}, fmt.Errorf("%w: a one-time consent has no --days", errUsage)
	case mode == tx.ModeStanding && (days == 0 || days > uint(svc.MaxStandingDays)):
		return service.Choice{}, fmt.Errorf("%w: a standing consent to %s needs --days from 1 to %d", errUsage, svc.ID, svc.MaxStandingDays)
	}
	return service.Choice{Mode: mode, Days: uint32(days), Typed: map[string]string{}}, nil
}

// fillChoice applies --omit and --set to the form.
func fillChoice(form *consent.Form, ch *service.Choice, omit string, sets setFlag) error {
	field := func(name string) *consent.Field {
		for i := range form.Fields {
			if form.Fields[i].Name == name {
				return &form.Fields[i]
			}
		}
		return nil
	}
	var names []string
	for _, f := range form.Fields {
		names = append(names, f.Name)
	}
	for _, name := range strings.Split(omit, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		f := field(name)
		switch {
		case f == nil:
			return fmt.Errorf("%w: --omit %s: the form has no such field (it has %s)", errUsage, name, strings.Join(names, ", "))
		case f.Required:
			return fmt.Errorf("%w: --omit %s: the service requires it; decline the application instead if you do not want to share it", errUsage, name)
		}
		ch.Omit = append(ch.Omit, name)
	}
	for name, v := range sets {
		f := field(name)
		switch {
		case f == nil:
			return fmt.Errorf("%w: --set %s: the form has no such field (it has %s)", errUsage, name, strings.Join(names, ", "))
		case f.Verified && !slices.Contains(ch.Omit, name):
			return fmt.Errorf("%w: --set %s: the field is filled from a verified credential and cannot be typed over", errUsage, name)
		case f.Required:
			return fmt.Errorf("%w: --set %s: the service needs a verified value for it", errUsage, name)
		case len(v) > maxTyped || strings.TrimSpace(v) == "":
			return fmt.Errorf("%w: --set %s: a typed value is 1 to %d bytes", errUsage, name, maxTyped)
		}
		ch.Typed[name] = v
	}
	return nil
}

// isSensitive reports whether f carries a sensitive claim; a field with no
// claim is typed in by the resident and is no part of the consent.
func isSensitive(f *consent.Field) bool { return f.Sensitive && f.Claim != (tx.ClaimRef{}) }

// sensitiveShared lists the sensitive fields the approval would share.
func sensitiveShared(form *consent.Form, omit []string) []consent.Field {
	var out []consent.Field
	for _, f := range form.Fields {
		if isSensitive(&f) && f.Verified && !slices.Contains(omit, f.Name) {
			out = append(out, f)
		}
	}
	return out
}

func issuerOf(d *directory, c tx.ClaimRef) string {
	for _, t := range d.types {
		if t.ID == c.Type {
			return t.Issuer
		}
	}
	return "?"
}

func consentTerm(mode string, days uint32) string {
	if mode == tx.ModeStanding {
		return fmt.Sprintf("standing, %d days / 长期同意%d天", days, days)
	}
	return fmt.Sprintf("one-time, usable for %s / 一次性", ledger.OneTimeWindow)
}

// printForm shows the resident the filled form before anything is sent:
// each value and who vouches for it, the sensitive items apart, and the
// terms of the consent.
func printForm(w io.Writer, d *directory, a *service.Application, svc *ledger.Service, form *consent.Form, ch *service.Choice) {
	fmt.Fprintf(w, "Application %s — %s / %s\n", a.ID, svc.NameZH, svc.NameEN)
	printTable(w, "  ", [][]string{
		{"service:", fmt.Sprintf("%s (version %d)", svc.ID, svc.Version)},
		{"asked by:", d.authority(svc.Authority)},
		{"purpose:", svc.PurposeZH},
		{"", svc.PurposeEN},
		{"legal basis:", svc.LegalBasis},
		{"retention:", fmt.Sprintf("%d days / 保存%d天", svc.RetentionDays, svc.RetentionDays)},
		{"consent:", consentTerm(ch.Mode, ch.Days)},
		{"answer by:", when(a.Expires)},
	})
	row := func(f *consent.Field) []string {
		label := f.LabelZH + " / " + f.LabelEN
		switch {
		case slices.Contains(ch.Omit, f.Name) && ch.Typed[f.Name] == "":
			return []string{label, "—", "not shared (you left it out) / 不提供"}
		case f.Verified && !slices.Contains(ch.Omit, f.Name):
			return []string{label, claimValue(f.Value), "verified by " + d.authority(f.Source)}
		case ch.Typed[f.Name] != "":
			return []string{label, ch.Typed[f.Name], "self-declared / 自填 (no authority vouches for it)"}
		case f.Required:
			return []string{label, "MISSING", "you hold no credential with it / 缺少已核验的信息"}
		case f.Claim == (tx.ClaimRef{}):
			return []string{label, "—", "empty; type it in with --set " + f.Name + "=…"}
		}
		return []string{label, "—", "empty: no credential holds it (optional)"}
	}
	var plain, sens [][]string
	for i := range form.Fields {
		f := &form.Fields[i]
		if isSensitive(f) && f.Verified {
			sens = append(sens, row(f))
		} else {
			plain = append(plain, row(f))
		}
	}
	fmt.Fprintln(w, "\nForm / 表单:")
	printTable(w, "  ", plain)
	if len(sens) > 0 {
		fmt.Fprintln(w, "\nSensitive personal information / 敏感个人信息 — needs your separate consent (PIPL Art. 29):")
		printTable(w, "  ", sens)
	}
	fmt.Fprintln(w)
}

// confirm asks a yes/no question; anything but yes is no.
func confirm(p *prompter, q string) (bool, error) {
	fmt.Fprint(p.e.stderr, q+" [y/N] ")
	line, err := p.in.ReadString('\n')
	if err != nil && line == "" {
		fmt.Fprintln(p.e.stderr)
		return false, nil
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes", "是":
		return true, nil
	}
	return false, nil
}

// openGuardian opens a guardian's wallet, if one is named, with its
// pseudonym secret (made and saved on first use).
func openGuardian(p *prompter, path string) (*service.Guardian, error) {
	if path == "" {
		return nil, nil
	}
	gw, pass, err := openWallet(p, path)
	if err != nil {
		return nil, fmt.Errorf("the guardian's wallet: %w", err)
	}
	secret, created, err := service.PseudonymSecret(gw)
	if err == nil && created {
		err = wallet.Save(path, gw, pass, wallet.DefaultParams)
	}
	if err != nil {
		gw.Wipe()
		return nil, fmt.Errorf("the guardian's wallet: %w", err)
	}
	return &service.Guardian{Contents: gw, Secret: secret}, nil
}

// residentSession is a wallet signed in to one node under every pseudonym
// it has towards the current authorities.
type residentSession struct {
	cl      *client.Client
	token   map[string]string // pseudonym -> session token
	towards map[string]string // pseudonym -> authority id
	tokens  []string
}

// signInWallet proves the wallet's pseudonyms, in as many sessions as it
// takes (authn.MaxPrincipals subjects each). A wallet that never gave a
// consent has no pseudonyms yet.
func signInWallet(ctx context.Context, cl *client.Client, w *wallet.Contents, d *directory) (*residentSession, error) {
	s := &residentSession{cl: cl, token: map[string]string{}, towards: map[string]string{}}
	if _, ok := w.Extra[service.PseudonymSecretField]; !ok {
		return s, nil
	}
	secret, _, err := service.PseudonymSecret(w)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(d.authorities))
	for id := range d.authorities {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	keys, err := service.Pseudonyms(secret, ids)
	if err != nil {
		return nil, err
	}
	for chunk := range slices.Chunk(ids, authn.MaxPrincipals) {
		ch, err := cl.Challenge(ctx)
		if err != nil {
			s.close(ctx)
			return nil, explain(err)
		}
		var proofs []authn.Proof
		for _, id := range chunk {
			psn := pseudonym.FromKey(keys[id].Public()).String()
			s.towards[psn] = id
			proofs = append(proofs, authn.WalletProof(*ch, psn, keys[id]))
		}
		r, err := cl.SignIn(ctx, ch.ID, proofs)
		if err != nil {
			s.close(ctx)
			return nil, explain(err)
		}
		s.tokens = append(s.tokens, r.Token)
		for _, p := range r.Principals {
			s.token[p] = r.Token
		}
	}
	return s, nil
}

// close signs out; a session left open would expire on its own.
func (s *residentSession) close(ctx context.Context) {
	for _, t := range s.tokens {
		_ = s.cl.SignOut(ctx, t)
	}
}

// openResident opens the wallet and signs it in.
func openResident(ctx context.Context, e *env, path string, n nodeOpt) (*wallet.Contents, *client.Client, *directory, *residentSession, error) {
	cl, err := n.client()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	w, _, err := openWallet(newPrompter(e), path)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	d, err := loadDirectory(ctx, cl)
	if err != nil {
		w.Wipe()
		return nil, nil, nil, nil, err
	}
	s, err := signInWallet(ctx, cl, w, d)
	if err != nil {
		w.Wipe()
		return nil, nil, nil, nil, err
	}
	return w, cl, d, s, nil
}

func consentList(ctx context.Context, e *env, args []string) error {
	c := find("consent list")
	fs := c.flags(e)
	path := fs.String("wallet", "", "your wallet file (required)")
	n := addNode(fs.String, e)
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("wallet", *path); err != nil {
		return err
	}
	w, _, d, s, err := openResident(ctx, e, *path, n)
	if err != nil {
		return err
	}
	defer w.Wipe()
	defer s.close(ctx)
	var all []ledger.Consent
	for _, t := range s.tokens {
		cs, err := s.cl.MyConsents(ctx, t)
		if err != nil {
			return explain(err)
		}
		all = append(all, cs...)
	}
	slices.SortFunc(all, func(a, b ledger.Consent) int { return int(b.Granted.Height - a.Granted.Height) })
	if *asJSON {
		return printJSON(e, all)
	}
	if len(all) == 0 {
		fmt.Fprintf(e.stdout, "You have given no consents (wallet of %s).\n", w.DID)
		return nil
	}
	fmt.Fprintf(e.stdout, "Consents given from the wallet of %s (%d):\n", w.DID, len(all))
	now := time.Now()
	for _, cn := range all {
		fmt.Fprintf(e.stdout, "\n%s\n", d.service(cn.Service))
		rows := [][]string{
			{"to:", d.authority(cn.Authority)},
			{"status:", consentStatus(&cn, now)},
			{"mode:", consentMode(&cn)},
			{"claims:", d.claimNames(cn.Claims)},
			{"sources:", strings.Join(cn.Sources, ", ")},
			{"granted:", fmt.Sprintf("%s (height %d)", when(cn.Granted.Time), cn.Granted.Height)},
			{"consent:", cn.ID},
			{"pseudonym:", cn.Subject},
		}
		if cn.ByGuardian != "" {
			rows = append(rows, []string{"guardian:", "given by your guardian / 由监护人代为同意 (" + cn.ByGuardian + ")"})
		}
		if cn.EndedByGuardian != "" {
			rows = append(rows, []string{"", "withdrawn by your guardian / 由监护人撤回"})
		}
		printTable(e.stdout, "  ", rows)
	}
	return nil
}

func consentMode(c *ledger.Consent) string {
	if c.Mode == tx.ModeStanding {
		return "standing / 长期 — until " + when(c.Until)
	}
	return "one-time / 一次性 — usable until " + when(c.Until)
}

// consentStatus is the consent's state in words. Expiry is judged on block
// time by the ledger; this clock only labels it.
func consentStatus(c *ledger.Consent, now time.Time) string {
	switch {
	case c.Status == ledger.ConsentRevoked:
		return fmt.Sprintf("revoked / 已撤回 (height %d)", c.Ended.Height)
	case c.Status == ledger.ConsentUsed:
		return fmt.Sprintf("used / 已使用 (height %d)", c.Ended.Height)
	case !now.Before(c.Until):
		return "expired / 已过期"
	case c.Status == ledger.ConsentActive:
		return "active / 有效"
	}
	return c.Status
}

func consentRevoke(ctx context.Context, e *env, args []string) error {
	c := find("consent revoke")
	fs := c.flags(e)
	path := fs.String("wallet", "", "your wallet file (required)")
	n := addNode(fs.String, e)
	svcID := fs.String("service", "", "the service whose consent you withdraw (required; imi consent list shows them)")
	guardianPath := fs.String("guardian-wallet", "", "the wallet of your registered guardian, who co-signs (when the registrar recorded that you consent only with a guardian)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("wallet", *path); err != nil {
		return err
	}
	if err := need("service", *svcID); err != nil {
		return err
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	p := newPrompter(e)
	w, _, err := openWallet(p, *path)
	if err != nil {
		return err
	}
	defer w.Wipe()
	if _, ok := w.Extra[service.PseudonymSecretField]; !ok {
		return fmt.Errorf("this wallet has given no consents, so there is none to %s to withdraw", *svcID)
	}
	secret, _, err := service.PseudonymSecret(w)
	if err != nil {
		return err
	}
	guardian, err := openGuardian(p, *guardianPath)
	if err != nil {
		return err
	}
	if guardian != nil {
		defer guardian.Contents.Wipe()
	}
	svc, err := cl.Service(ctx, *svcID)
	if err != nil {
		if isNotFound(err) {
			return fmt.Errorf("no service %q is published (imi consent list shows your consents)", *svcID)
		}
		return explain(err)
	}
	k, err := pseudonym.Derive(secret, svc.Authority)
	if err != nil {
		return err
	}
	st, err := cl.Status(ctx)
	if err != nil {
		return explain(err)
	}
	seq, err := cl.NextSeq(ctx, pseudonym.FromKey(k.Public()).String(), 0)
	if err != nil {
		return explain(err)
	}
	raw, err := service.Revoke(secret, svc.Authority, svc.ID, st.ChainID, seq, guardian)
	if err != nil {
		return err
	}
	res, err := cl.SubmitRaw(ctx, raw)
	if err != nil {
		return explain(err)
	}
	h, err := committedHeight(ctx, cl, res)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Withdrew your consent to %s at height %d (tx %s).\nFrom block %d on, %s can no longer read your data for it; any attempt is refused and shows in your log (imi log). / 已撤回同意。\n",
		svc.ID, h, res.Hash, h+1, svc.Authority)
	return nil
}

// committedHeight returns the height a submitted transaction committed at,
// waiting for it if the node answered before its block.
func committedHeight(ctx context.Context, cl *client.Client, res *httpapi.SubmitResponse) (int64, error) {
	if res.Status == "committed" {
		return res.Height, nil
	}
	wctx, cancel := context.WithTimeout(ctx, commitWait)
	defer cancel()
	r, err := cl.WaitTx(wctx, res.Hash)
	if err != nil {
		return 0, explain(err)
	}
	if r.Code != ledger.OK {
		return 0, fmt.Errorf("refused (%s): %s / %s\n  detail: %s", r.Code.Name(), r.Code.Message(), r.Code.MessageZH(), r.Log)
	}
	return r.Height, nil
}

func accessLog(ctx context.Context, e *env, args []string) error {
	c := find("log")
	fs := c.flags(e)
	path := fs.String("wallet", "", "your wallet file (required)")
	n := addNode(fs.String, e)
	verify := fs.Bool("verify", false, "check each record's Merkle proof against a block header the validators signed")
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("wallet", *path); err != nil {
		return err
	}
	w, _, d, s, err := openResident(ctx, e, *path, n)
	if err != nil {
		return err
	}
	defer w.Wipe()
	defer s.close(ctx)
	var all []ledger.Access
	for _, t := range s.tokens {
		r, err := s.cl.MyAccessLog(ctx, t)
		if err != nil {
			return explain(err)
		}
		all = append(all, r.Records...)
	}
	slices.SortStableFunc(all, func(a, b ledger.Access) int { return int(a.At.Height - b.At.Height) })
	if *asJSON && !*verify {
		return printJSON(e, all)
	}
	if !*asJSON {
		if len(all) == 0 {
			fmt.Fprintf(e.stdout, "Nobody has read your data through IMI (wallet of %s).\n", w.DID)
			return nil
		}
		fmt.Fprintf(e.stdout, "Access log of %s — %d record(s), under your pseudonyms towards %d authorities:\n", w.DID, len(all), len(s.towards))
	}
	if !*verify {
		for i := range all {
			printAccess(e.stdout, d, &all[i], false)
		}
		return nil
	}
	st, err := s.cl.Status(ctx)
	if err != nil {
		return explain(err)
	}
	v := &proofChecker{cl: s.cl, chainID: st.ChainID, appHash: map[int64][]byte{}}
	bad := 0
	for i := range all {
		a := &all[i]
		if !*asJSON {
			printAccess(e.stdout, d, a, false)
		}
		h, err := v.check(ctx, s.token[a.Subject], a)
		if err != nil {
			bad++
			fmt.Fprintf(e.stdout, "  PROOF FAILED: %v\n", err)
			continue
		}
		if !*asJSON {
			fmt.Fprintf(e.stdout, "  proof ok at height %d\n", h)
		}
	}
	if *asJSON {
		if err := printJSON(e, all); err != nil {
			return err
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d access record(s) could not be proven against a signed block", bad, len(all))
	}
	fmt.Fprintf(e.stderr, "verified: every record is in the state committed at height %d (app hash in the header of block %d, signed by more than two-thirds of the validators)\n", v.height, v.height+1)
	return nil
}

// proofChecker proves access records against one committed state, fetching
// and verifying the signed header that commits to it once.
type proofChecker struct {
	cl      *client.Client
	chainID string
	height  int64 // the state all proofs are asked at, once the first fixes it
	appHash map[int64][]byte
}

func (v *proofChecker) check(ctx context.Context, token string, a *ledger.Access) (int64, error) {
	if token == "" {
		return 0, fmt.Errorf("the record names %s, which is not one of your pseudonyms", a.Subject)
	}
	r, err := v.cl.AccessProof(ctx, token, a.Subject, a.ID, v.height)
	if err != nil {
		return 0, explain(err)
	}
	if r.Proof == nil {
		return 0, errors.New("the node sent no proof")
	}
	if v.height == 0 {
		v.height = r.Proof.Height
	}
	if r.Proof.Height != v.height {
		return 0, fmt.Errorf("the node sent a proof at height %d, not %d", r.Proof.Height, v.height)
	}
	appHash, err := v.header(ctx, r.Proof.Height)
	if err != nil {
		return 0, err
	}
	if err := r.Proof.Verify(appHash); err != nil {
		return 0, err
	}
	got, err := ledger.AccessFromProof(r.Proof)
	if err != nil {
		return 0, err
	}
	if !sameAccess(got, a) {
		return 0, errors.New("the proven record differs from the one the node listed")
	}
	return r.Proof.Height, nil
}

// header returns the app hash of the state after block h, from the signed
// header of block h+1, waiting briefly if that block is still to come.
func (v *proofChecker) header(ctx context.Context, h int64) ([]byte, error) {
	if b, ok := v.appHash[h]; ok {
		return b, nil
	}
	var evidence []byte
	var err error
	for i := 0; ; i++ {
		evidence, err = v.cl.CommitJSON(ctx, h+1)
		if err == nil || i == 40 {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, explain(err)
	}
	got, appHash, err := district.VerifiedAppHash(v.chainID, evidence)
	if err != nil {
		return nil, fmt.Errorf("the signed header does not verify: %w", err)
	}
	if got != h+1 {
		return nil, fmt.Errorf("the node sent header %d for a proof at height %d", got, h)
	}
	v.appHash[h] = appHash
	return appHash, nil
}

// sameAccess compares the record a node listed with the proven one.
func sameAccess(a, b *ledger.Access) bool {
	return bytes.Equal(a.ID, b.ID) && a.Subject == b.Subject && a.Reader == b.Reader && a.Source == b.Source &&
		a.Service == b.Service && slices.Equal(a.Claims, b.Claims) && a.Channel == b.Channel &&
		a.Outcome == b.Outcome && a.Reason == b.Reason && a.Consent == b.Consent && a.ByGuardian == b.ByGuardian &&
		a.Recorder == b.Recorder && a.At.Height == b.At.Height && a.At.Time.Equal(b.At.Time)
}

func registrarDelegate(ctx context.Context, e *env, args []string) error {
	c := find("registrar delegate")
	fs := c.flags(e)
	s := addSigner(fs, e)
	n := addNode(fs.String, e)
	guardian := fs.String("guardian", "", "the guardian's DID (required)")
	ward := fs.String("ward", "", "the ward's DID (required)")
	basis := fs.String("basis", "", "minor, adult_incapacity or adult_assisted (required)")
	scope := fs.String("scope", "", `"*" for every service, or comma-separated service ids (required)`)
	days := fs.Uint("days", 0, "how many days the delegation lasts (required)")
	reference := fs.String("reference", "", "file number of the in-person check (required)")
	guardianConsent := fs.Bool("guardian-consent", false, "the ward cannot consent alone: every consent needs the guardian (under 14, PIPL Art. 31)")
	if err := parse(fs, args); err != nil {
		return err
	}
	for _, f := range [][2]string{{"guardian", *guardian}, {"ward", *ward}, {"basis", *basis}, {"scope", *scope}, {"reference", *reference}} {
		if err := need(f[0], f[1]); err != nil {
			return err
		}
	}
	for _, d := range []string{*guardian, *ward} {
		if _, err := did.Parse(d); err != nil {
			return fmt.Errorf("%w: %q is not an IMI DID: %v", errUsage, d, err)
		}
	}
	switch *basis {
	case tx.BasisMinor, tx.BasisAdultIncapable, tx.BasisAdultAssisted:
	default:
		return fmt.Errorf("%w: --basis is minor, adult_incapacity or adult_assisted", errUsage)
	}
	if *days == 0 || *days > math.MaxUint32 {
		return fmt.Errorf("%w: --days must be positive", errUsage)
	}
	var sc []string
	for _, s := range strings.Split(*scope, ",") {
		if s = strings.TrimSpace(s); s != "" {
			sc = append(sc, s)
		}
	}
	slices.Sort(sc)
	sc = slices.Compact(sc)
	if len(sc) == 0 || (slices.Contains(sc, "*") && len(sc) > 1) {
		return fmt.Errorf("%w: --scope is \"*\" alone, or service ids", errUsage)
	}
	res, cl, err := s.submit(ctx, n, &tx.RecordDelegation{
		Guardian: *guardian, Ward: *ward, Basis: *basis, Reference: *reference,
		Scope: sc, Days: uint32(*days), GuardianConsent: *guardianConsent,
	})
	if err != nil {
		return err
	}
	h, err := committedHeight(ctx, cl, res)
	if err != nil {
		return err
	}
	// The ledger names a delegation by the first 16 bytes of its
	// transaction's hash.
	id := strings.ToLower(res.Hash[:32])
	alone := "the ward may still consent alone"
	if *guardianConsent {
		alone = "the ward consents only together with the guardian"
	}
	fmt.Fprintf(e.stdout, `Recorded delegation %s at height %d (tx %s):
  %s may act for %s
  basis %s, scope %s, for %d days, reference %s; %s
End it with: imi registrar end-delegation --ward %s --id %s
`, id, h, res.Hash, *guardian, *ward, *basis, strings.Join(sc, ","), *days, *reference, alone, *ward, id)
	return nil
}

func registrarEndDelegation(ctx context.Context, e *env, args []string) error {
	c := find("registrar end-delegation")
	fs := c.flags(e)
	s := addSigner(fs, e)
	n := addNode(fs.String, e)
	ward := fs.String("ward", "", "the ward's DID (required)")
	id := fs.String("id", "", "the delegation id imi registrar delegate printed (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("ward", *ward); err != nil {
		return err
	}
	if err := need("id", *id); err != nil {
		return err
	}
	if _, err := did.Parse(*ward); err != nil {
		return fmt.Errorf("%w: --ward %q is not an IMI DID: %v", errUsage, *ward, err)
	}
	res, cl, err := s.submit(ctx, n, &tx.EndDelegation{Ward: *ward, ID: strings.ToLower(*id)})
	if err != nil {
		return err
	}
	h, err := committedHeight(ctx, cl, res)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Ended delegation %s of %s at height %d (tx %s).\n", *id, *ward, h, res.Hash)
	return nil
}
