package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/imi-city/imi/internal/client"
	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/jws"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/sdjwt"
	"github.com/imi-city/imi/internal/wallet"
)

// passphraseEnv, when set, holds the wallet passphrase, for scripts; a
// person is asked at a prompt instead.
const passphraseEnv = "IMI_WALLET_PASSPHRASE"

// maxCredentialFile bounds an issued credential file.
const maxCredentialFile = 256 << 10

func init() {
	register(&command{
		name:    "wallet init",
		summary: "create an encrypted wallet holding a resident's DID and key",
		usage:   "--wallet FILE --resident DIR",
		examples: `  imi wallet init --wallet ./alice.wallet --resident ./alice
  # asks for a passphrase twice (or reads $IMI_WALLET_PASSPHRASE)`,
		run: walletInit,
	})
	register(&command{
		name:    "wallet add",
		summary: "store an issued credential in the wallet",
		usage:   "--wallet FILE [--node URL] CREDENTIAL.json",
		examples: `  imi wallet add --wallet ./alice.wallet ./alice-identity.json
  # then delete ./alice-identity.json: the wallet holds the only copy needed`,
		run: walletAdd,
	})
	register(&command{
		name:     "wallet list",
		summary:  "list the wallet's credentials with their status read live from the ledger",
		usage:    "--wallet FILE [--node URL]",
		examples: `  imi wallet list --wallet ./alice.wallet`,
		run:      walletList,
	})
	register(&command{
		name:    "wallet present",
		summary: "disclose chosen claims of a credential to one verifier, for one request",
		usage:   "--wallet FILE --type T --claims a,b,c --aud AUD --nonce N [--out FILE]",
		examples: `  imi wallet present --wallet ./alice.wallet --type resident_identity \
      --claims given_name,age_over_60 --aud https://bus.example.gov.cn --nonce 7f3a9c…  > ./presentation.txt
  # only the named claims are disclosed; the verifier's --aud and --nonce come from its request`,
		run: walletPresent,
	})
}

// prompter reads passphrases: from the environment, or typed on stdin.
type prompter struct {
	e  *env
	in *bufio.Reader
}

func newPrompter(e *env) *prompter { return &prompter{e: e, in: bufio.NewReader(e.stdin)} }

// passphrase returns the wallet passphrase; confirm asks for it twice. On a
// terminal the typing is not echoed (golang.org/x/term: the standard library
// cannot turn echo off).
func (p *prompter) passphrase(path string, confirm bool) ([]byte, error) {
	if v := p.e.getenv(passphraseEnv); v != "" {
		return []byte(v), nil
	}
	read := func(prompt string) ([]byte, error) {
		fmt.Fprint(p.e.stderr, prompt)
		if f, ok := p.e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(p.e.stderr)
			if err != nil || len(b) == 0 {
				return nil, fmt.Errorf("%w: no passphrase given for %s (type it at the prompt or set %s)", errUsage, path, passphraseEnv)
			}
			return b, nil
		}
		line, err := p.in.ReadString('\n')
		if err != nil && (line == "" || !errors.Is(err, io.EOF)) {
			return nil, fmt.Errorf("%w: no passphrase given for %s (type it at the prompt or set %s)", errUsage, path, passphraseEnv)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return nil, fmt.Errorf("%w: no passphrase given for %s (type it at the prompt or set %s)", errUsage, path, passphraseEnv)
		}
		return []byte(line), nil
	}
	pass, err := read(fmt.Sprintf("Passphrase for %s / 钱包密码: ", path))
	if err != nil || !confirm {
		return pass, err
	}
	again, err := read("Again, to confirm / 再次输入: ")
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(pass, again) {
		return nil, errors.New("the two passphrases differ; nothing was written")
	}
	return pass, nil
}

// openWallet loads and decrypts the wallet at path.
func openWallet(p *prompter, path string) (*wallet.Contents, []byte, error) {
	if path == "" {
		return nil, nil, fmt.Errorf("%w: --wallet is required", errUsage)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, nil, fmt.Errorf("no wallet at %s (imi wallet init creates one): %w", path, err)
	}
	pass, err := p.passphrase(path, false)
	if err != nil {
		return nil, nil, err
	}
	c, err := wallet.Load(path, pass)
	switch {
	case errors.Is(err, wallet.ErrWrongPassphrase):
		return nil, nil, fmt.Errorf("wrong passphrase for %s; nothing was changed", path)
	case errors.Is(err, wallet.ErrCorrupt):
		return nil, nil, fmt.Errorf("%s is damaged or not an IMI wallet: %w", path, err)
	case err != nil:
		return nil, nil, err
	}
	return c, pass, nil
}

// walletKey is the resident's signing key held in the wallet (its seed).
func walletKey(c *wallet.Contents) (key.Private, error) {
	k, err := key.FromSeed(c.Key)
	if err != nil {
		return key.Private{}, fmt.Errorf("the wallet's key is damaged: %w", err)
	}
	return k, nil
}

// residentSeed reads the 32-byte seed of a resident key file.
func residentSeed(path string) ([]byte, key.Private, error) {
	k, err := key.ReadFile(path)
	if err != nil {
		return nil, key.Private{}, err
	}
	return k.Seed(), k, nil
}

func walletInit(ctx context.Context, e *env, args []string) error {
	c := find("wallet init")
	fs := c.flags(e)
	path := fs.String("wallet", "", "wallet file to create (required; must not exist)")
	dir := fs.String("resident", "", "the resident's key directory from imi resident keygen (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("wallet", *path); err != nil {
		return err
	}
	if err := need("resident", *dir); err != nil {
		return err
	}
	if _, err := os.Stat(*path); err == nil {
		return fmt.Errorf("%s already exists; a wallet is never overwritten", *path)
	}
	var req Request
	if err := readJSONFile(filepath.Join(*dir, requestFile), &req); err != nil {
		return err
	}
	seed, k, err := residentSeed(filepath.Join(*dir, residentKeyFile))
	if err != nil {
		return err
	}
	defer clear(seed)
	if _, err := did.Parse(req.DID); err != nil {
		return err
	}
	pass, err := newPrompter(e).passphrase(*path, true)
	if err != nil {
		return err
	}
	if len([]rune(string(pass))) < wallet.MinPassphrase {
		return fmt.Errorf("%w: the passphrase must be at least %d characters", errUsage, wallet.MinPassphrase)
	}
	// Claimed with O_EXCL so that two inits cannot both succeed; Save then
	// replaces the empty placeholder atomically.
	f, err := os.OpenFile(*path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s already exists; a wallet is never overwritten", *path)
		}
		return fmt.Errorf("couldn't create %s: %w", *path, err)
	}
	f.Close()
	w := &wallet.Contents{DID: req.DID, Key: bytes.Clone(seed), Credentials: []wallet.Credential{}}
	defer w.Wipe()
	if err := wallet.Save(*path, w, pass, wallet.DefaultParams); err != nil {
		os.Remove(*path)
		return err
	}
	fmt.Fprintf(e.stdout, "Created %s for %s (key %s), encrypted under your passphrase. Keep %s offline: it is how you recover if this wallet is lost.\n",
		*path, req.DID, k.Public(), filepath.Join(*dir, recoveryKeyFile))
	return nil
}

// heldCredential is what wallet add reads from an issued credential: the
// signed payload, which decides, checked against the issuer's side file.
type heldCredential struct {
	jws     *jws.JWS
	payload map[string]any
	sd      *sdjwt.SDJWT
}

func parseHeld(s string) (*heldCredential, error) {
	p, err := sdjwt.Parse(s, sdjwt.Limits{})
	if err != nil {
		return nil, fmt.Errorf("the credential is malformed: %w", err)
	}
	if p.KeyBindingJWT != "" {
		return nil, errors.New("this is a presentation made for a verifier, not an issued credential")
	}
	j, payload, err := jws.ParseClaims(p.JWT, jws.EdDSA)
	if err != nil {
		return nil, fmt.Errorf("the credential is malformed: %w", err)
	}
	if j.Header.Typ != sdjwt.TypSDJWT {
		return nil, fmt.Errorf("the credential has type %q, not %q", j.Header.Typ, sdjwt.TypSDJWT)
	}
	return &heldCredential{jws: j, payload: payload, sd: p}, nil
}

// claimNames are the claims the credential can disclose, in issuance order.
func (h *heldCredential) claimNames() []string {
	var out []string
	for _, d := range h.sd.Disclosures {
		if !d.Element && !slices.Contains(out, d.Name) {
			out = append(out, d.Name)
		}
	}
	return out
}

func (h *heldCredential) holderKey() (ed25519.PublicKey, error) {
	cnf, _ := h.payload["cnf"].(map[string]any)
	m, _ := cnf["jwk"].(map[string]any)
	if m == nil {
		return nil, errors.New("the credential names no holder key (cnf.jwk)")
	}
	k, err := jws.ParseJWKMap(m)
	if err != nil {
		return nil, fmt.Errorf("the credential's holder key: %w", err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("the credential's holder key is not an Ed25519 key")
	}
	return ek, nil
}

func (h *heldCredential) date(name string) (time.Time, bool) {
	f, ok := h.payload[name].(float64)
	if !ok || f < 0 || f > 1e11 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0).UTC(), true
}

func walletAdd(ctx context.Context, e *env, args []string) error {
	c := find("wallet add")
	fs := c.flags(e)
	path := fs.String("wallet", "", "the wallet file (required)")
	n := addNode(fs.String, e)
	file, err := parseOneArg(fs, args)
	if err != nil {
		return err
	}
	if file == "" {
		return fmt.Errorf("%w: name the credential file to add", errUsage)
	}
	if err := need("wallet", *path); err != nil {
		return err
	}
	b, err := readLimited(file, maxCredentialFile)
	if err != nil {
		return err
	}
	var is credential.Issued
	if err := json.Unmarshal(b, &is); err != nil || is.SDJWT == "" {
		return fmt.Errorf("%s is not an issued credential (the file imi credential issue writes)", file)
	}
	h, err := parseHeld(is.SDJWT)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	// What the wallet records comes from the signed payload; the side file
	// only has to agree with it.
	iss, _ := h.payload["iss"].(string)
	vct, _ := h.payload["vct"].(string)
	st, _ := h.payload["status"].(map[string]any)
	sl, _ := st["status_list"].(map[string]any)
	uri, _ := sl["uri"].(string)
	idx, idxOK := sl["idx"].(float64)
	iat, iatOK := h.date("iat")
	exp, expOK := h.date("exp")
	switch {
	case iss == "" || vct == "" || uri == "" || !idxOK || !iatOK || !expOK:
		return fmt.Errorf("%s: the credential lacks its issuer, type, status or dates", file)
	case iss != is.IssuerDID || vct != is.VCT || uri != is.StatusURI || uint32(idx) != is.StatusIdx || float64(is.StatusIdx) != idx:
		return fmt.Errorf("%s: the file's description does not match the signed credential; ask the issuer for it again", file)
	}
	if _, err := credential.ListOf(uri, is.Issuer); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	p := newPrompter(e)
	w, pass, err := openWallet(p, *path)
	if err != nil {
		return err
	}
	defer w.Wipe()
	k, err := walletKey(w)
	if err != nil {
		return err
	}
	holder, err := h.holderKey()
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if !bytes.Equal(holder, k.Public().Bytes()) {
		return fmt.Errorf("%s is bound to another key than this wallet's (%s): it was issued to someone else, or for a key the resident has since replaced", file, w.DID)
	}
	id := wallet.CredentialID(is.SDJWT)
	for _, held := range w.Credentials {
		if held.ID == id {
			return fmt.Errorf("the wallet already holds this credential (%s)", id)
		}
	}
	// The issuer's signature is checked against the ledger when a node
	// answers; a wallet can take a credential offline and check it later.
	checked := checkIssuerSignature(ctx, n, h, &is)
	if errors.Is(checked, errNotGenuine) {
		return fmt.Errorf("%s: %w; it was not added", file, checked)
	}
	w.Credentials = append(w.Credentials, wallet.Credential{
		ID: id, SDJWT: is.SDJWT, Type: is.Type, VCT: vct, Issuer: iss, IssuerID: is.Issuer,
		IssuedAt: iat, ExpiresAt: exp, StatusURI: uri, StatusIdx: uint64(idx), Added: time.Now().UTC().Truncate(time.Second),
	})
	if err := wallet.Save(*path, w, pass, wallet.DefaultParams); err != nil {
		return err
	}
	if checked != nil {
		fmt.Fprintf(e.stderr, "note: the issuer's signature was not checked against the ledger (%v); imi wallet list shows the live status\n", checked)
	}
	fmt.Fprintf(e.stdout, "Added %s (%s) from %s, valid until %s, to %s. You can now delete %s.\n",
		is.Type, id, is.Issuer, exp.Local().Format(time.DateOnly), *path, file)
	return nil
}

var errNotGenuine = errors.New("the credential does not match what the ledger lists for its issuer: it was altered or forged")

// checkIssuerSignature verifies the issuer-signed JWT with the key the
// ledger lists for the credential's kid.
func checkIssuerSignature(ctx context.Context, n nodeOpt, h *heldCredential, is *credential.Issued) error {
	cl, err := n.client()
	if err != nil {
		return err
	}
	au, err := cl.Authority(ctx, is.Issuer)
	if err != nil {
		return explain(err)
	}
	if au.DID != is.IssuerDID {
		return fmt.Errorf("%w (%s is not %s's DID)", errNotGenuine, is.IssuerDID, au.ID)
	}
	rest, ok := strings.CutPrefix(h.jws.Header.Kid, au.DID+"#key-")
	v, err := strconv.ParseUint(rest, 10, 64)
	if !ok || err != nil || strconv.FormatUint(v, 10) != rest {
		return fmt.Errorf("%w (unknown kid %q)", errNotGenuine, h.jws.Header.Kid)
	}
	pk, ok := au.KeyAt(v)
	if !ok {
		return fmt.Errorf("%w (no key %d)", errNotGenuine, v)
	}
	if err := h.jws.Verify(pk.Key.Ed25519()); err != nil {
		return fmt.Errorf("%w (the signature does not verify with %s's key %d)", errNotGenuine, au.ID, v)
	}
	// The type id is not in the signed part; the vct is, and the ledger
	// says which type it names.
	ct, err := cl.CredentialType(ctx, is.Type)
	if err != nil {
		return explain(err)
	}
	if vct, _ := h.payload["vct"].(string); ct.VCT != vct {
		return fmt.Errorf("%w (it is a %s, not a %s)", errNotGenuine, vct, is.Type)
	}
	return nil
}

// statusWords are the statuses wallet list shows, in English and Chinese.
var statusWords = map[string]string{
	"valid":     "valid / 有效",
	"revoked":   "revoked / 已撤销",
	"suspended": "suspended / 已暂停",
	"expired":   "expired / 已过期",
}

// liveStatus reads a credential's status from the ledger. A failure to
// read is "unknown", never "revoked".
func liveStatus(ctx context.Context, cl *client.Client, c *wallet.Credential, now time.Time) string {
	expired := !now.Before(c.ExpiresAt)
	list, err := credential.ListOf(c.StatusURI, c.IssuerID)
	if err != nil {
		return "status unknown: " + err.Error()
	}
	entry, err := cl.StatusEntry(ctx, c.IssuerID, list, uint32(c.StatusIdx))
	var p *client.Problem
	switch {
	case err == nil:
	case expired:
		return statusWords["expired"]
	case errors.As(err, &p) && p.Status == 404:
		return "status unknown: the ledger has no such status entry / 状态未知"
	case errors.As(err, &p):
		return "status unknown: " + p.Title + " / 状态未知"
	default:
		return "status unknown: node unreachable / 状态未知：节点无法连接"
	}
	switch entry.Status {
	case ledger.StatusInvalid:
		return statusWords["revoked"]
	case ledger.StatusSuspended:
		return statusWords["suspended"]
	case ledger.StatusValid:
		if expired {
			return statusWords["expired"]
		}
		return statusWords["valid"]
	}
	return fmt.Sprintf("status unknown: value %d / 状态未知", entry.Status)
}

func walletList(ctx context.Context, e *env, args []string) error {
	c := find("wallet list")
	fs := c.flags(e)
	path := fs.String("wallet", "", "the wallet file (required)")
	n := addNode(fs.String, e)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("wallet", *path); err != nil {
		return err
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	w, _, err := openWallet(newPrompter(e), *path)
	if err != nil {
		return err
	}
	defer w.Wipe()
	fmt.Fprintf(e.stdout, "Wallet of %s — %d credential(s)\n", w.DID, len(w.Credentials))
	types := map[string]*ledger.CredentialType{}
	issuers := map[string]*ledger.Authority{}
	now := time.Now()
	for i := range w.Credentials {
		cr := &w.Credentials[i]
		typeName := cr.Type
		if _, ok := types[cr.Type]; !ok {
			types[cr.Type], _ = cl.CredentialType(ctx, cr.Type)
		}
		if t := types[cr.Type]; t != nil {
			typeName = fmt.Sprintf("%s / %s (%s)", t.NameZH, t.NameEN, cr.Type)
		}
		issuerName := cr.IssuerID
		if _, ok := issuers[cr.IssuerID]; !ok {
			issuers[cr.IssuerID], _ = cl.Authority(ctx, cr.IssuerID)
		}
		if a := issuers[cr.IssuerID]; a != nil {
			issuerName = fmt.Sprintf("%s / %s (%s)", a.NameZH, a.NameEN, cr.IssuerID)
		}
		fmt.Fprintf(e.stdout, "\n%d. %s\n   issuer:  %s\n   valid:   %s to %s\n   status:  %s\n   id:      %s\n",
			i+1, typeName, issuerName,
			cr.IssuedAt.Local().Format(time.DateOnly), cr.ExpiresAt.Local().Format(time.DateOnly),
			liveStatus(ctx, cl, cr, now), cr.ID)
	}
	return nil
}

// pickCredential returns the wallet's credential of type t: the newest one
// not yet expired, else the newest.
func pickCredential(w *wallet.Contents, t string, now time.Time) (*wallet.Credential, error) {
	var best *wallet.Credential
	for i := range w.Credentials {
		c := &w.Credentials[i]
		if c.Type != t {
			continue
		}
		live, bestLive := now.Before(c.ExpiresAt), best != nil && now.Before(best.ExpiresAt)
		if best == nil || (live && !bestLive) || (live == bestLive && c.IssuedAt.After(best.IssuedAt)) {
			best = c
		}
	}
	if best == nil {
		var have []string
		for _, c := range w.Credentials {
			have = append(have, c.Type)
		}
		if len(have) == 0 {
			return nil, fmt.Errorf("the wallet holds no %s credential; it holds none at all yet (imi wallet add)", t)
		}
		return nil, fmt.Errorf("the wallet holds no %s credential; it holds: %s", t, strings.Join(have, ", "))
	}
	return best, nil
}

func walletPresent(ctx context.Context, e *env, args []string) error {
	c := find("wallet present")
	fs := c.flags(e)
	path := fs.String("wallet", "", "the wallet file (required)")
	typ := fs.String("type", "", "which credential, by type id (required)")
	claimList := fs.String("claims", "", "comma-separated claims to disclose, and nothing else (required)")
	aud := fs.String("aud", "", "the verifier's audience, from its request (required)")
	nonce := fs.String("nonce", "", "the verifier's nonce, from its request (required)")
	out := fs.String("out", "", "write the presentation to this new file (default: standard output)")
	if err := parse(fs, args); err != nil {
		return err
	}
	for _, f := range [][2]string{{"wallet", *path}, {"type", *typ}, {"claims", *claimList}, {"aud", *aud}, {"nonce", *nonce}} {
		if err := need(f[0], f[1]); err != nil {
			return err
		}
	}
	var names []string
	for _, s := range strings.Split(*claimList, ",") {
		if s = strings.TrimSpace(s); s != "" && !slices.Contains(names, s) {
			names = append(names, s)
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("%w: --claims names no claim", errUsage)
	}
	if *out != "" {
		if _, err := os.Stat(*out); err == nil {
			return fmt.Errorf("%s already exists; choose another --out", *out)
		}
	}
	w, _, err := openWallet(newPrompter(e), *path)
	if err != nil {
		return err
	}
	defer w.Wipe()
	now := time.Now()
	cr, err := pickCredential(w, *typ, now)
	if err != nil {
		return err
	}
	h, err := parseHeld(cr.SDJWT)
	if err != nil {
		return fmt.Errorf("the stored %s credential: %w", cr.Type, err)
	}
	have := h.claimNames()
	var unknown []string
	for _, name := range names {
		if !slices.Contains(have, name) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("%w: the %s credential has no claim %s; it has: %s", errUsage, cr.Type, strings.Join(quoteAll(unknown), ", "), strings.Join(have, ", "))
	}
	k, err := walletKey(w)
	if err != nil {
		return err
	}
	pres, err := sdjwt.Present(cr.SDJWT, names)
	if err != nil {
		return fmt.Errorf("couldn't build the presentation: %w", err)
	}
	pres, err = sdjwt.AddKeyBinding(pres, credential.Signer(k), *aud, *nonce, now)
	if err != nil {
		return fmt.Errorf("couldn't sign the presentation: %w", err)
	}
	if !now.Before(cr.ExpiresAt) {
		fmt.Fprintf(e.stderr, "note: this %s credential expired on %s; the verifier will refuse it\n", cr.Type, cr.ExpiresAt.Local().Format(time.DateOnly))
	}
	fmt.Fprintf(e.stderr, "Presenting %s to %s, disclosing only: %s\n", cr.Type, *aud, strings.Join(names, ", "))
	if *out == "" {
		_, err := fmt.Fprintln(e.stdout, pres)
		return err
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("couldn't create %s: %w", *out, err)
	}
	if _, err := f.WriteString(pres + "\n"); err != nil {
		f.Close()
		os.Remove(*out)
		return fmt.Errorf("couldn't write %s: %w", *out, err)
	}
	return f.Close()
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}

// parseOneArg parses flags before and after one positional argument, which
// it returns ("" if there is none). "-" is a positional argument.
func parseOneArg(fs *flag.FlagSet, args []string) (string, error) {
	var pos []string
	for {
		if err := parse(fs, args); err != nil {
			return "", err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) > 1 {
		return "", fmt.Errorf("%w: one argument expected, got %d (%s)", errUsage, len(pos), strings.Join(pos, " "))
	}
	if len(pos) == 0 {
		return "", nil
	}
	return pos[0], nil
}
