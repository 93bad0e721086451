package main

import (
	"bufio"
	"context"
	"fmt"
	"strings"

	"github.com/imi-city/imi/internal/client"
	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/district"
	"github.com/imi-city/imi/internal/httpapi"
	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/tx"
)

func init() {
	register(&command{
		name:    "registrar register",
		summary: "anchor a resident's DID after checking the ID card in person",
		usage:   "(--as ID | --key FILE) --request FILE --id-number N [--assurance high] [--lane N]",
		examples: `  imi registrar register --as cc-psb --request ./alice/request.json --id-number 440604199003070014
  # the ID number is checked (GB 11643-1999) and turned into a keyed hash here; it is never sent`,
		run: registrarRegister,
	})
	register(&command{
		name:    "registrar reproof",
		summary: "re-proof a resident in person and bind a new key (government-backed recovery)",
		usage:   "(--as ID | --key FILE) --did DID --request FILE --id-number N",
		examples: `  imi resident keygen --dir ./alice-new
  imi registrar reproof --as cc-psb --did did:imi:… --request ./alice-new/request.json --id-number 440604199003070014`,
		run: registrarReproof,
	})
	register(&command{
		name:     "registrar deactivate",
		summary:  "deactivate a resident's DID with a reason",
		usage:    "(--as ID | --key FILE) --did DID --reason deceased|moved_away|registration_error|resident_request",
		examples: `  imi registrar deactivate --as cc-psb --did did:imi:… --reason moved_away`,
		run:      registrarDeactivate,
	})
}

// signerOpt is --as ID / --key FILE: which authority signs.
type signerOpt struct {
	as, keyFile, home *string
	lane              *uint
}

func addSigner(fs interface {
	String(string, string, string) *string
	Uint(string, uint, string) *uint
}, e *env) signerOpt {
	return signerOpt{
		as:      fs.String("as", "", "sign as this authority, with its key from --home's keys/ (e.g. cc-psb)"),
		keyFile: fs.String("key", "", "sign with this authority key file"),
		home:    fs.String("home", defaultHome(e), "node home holding keys/ (for --as and the uniqueness key)"),
		lane:    fs.Uint("lane", 0, "sequence lane 0-255: counters signing in parallel each use their own"),
	}
}

func (s signerOpt) load() (key.Private, did.DID, error) {
	path := *s.keyFile
	if path == "" {
		if *s.as == "" {
			return key.Private{}, did.DID{}, fmt.Errorf("%w: say who signs, with --as ID or --key FILE", errUsage)
		}
		path = district.KeyFile(*s.home, *s.as)
	}
	k, err := key.ReadFile(path)
	if err != nil {
		return key.Private{}, did.DID{}, err
	}
	if *s.lane >= tx.MaxLanes {
		return key.Private{}, did.DID{}, fmt.Errorf("%w: --lane must be below %d", errUsage, tx.MaxLanes)
	}
	// An authority's DID is derived from its key, like a resident's.
	return k, did.FromKey(k.Public()), nil
}

// submit signs body as the chosen authority and sends it to the node.
func (s signerOpt) submit(ctx context.Context, n nodeOpt, body tx.Body) (*httpapi.SubmitResponse, *client.Client, error) {
	k, signer, err := s.load()
	if err != nil {
		return nil, nil, err
	}
	cl, err := n.client()
	if err != nil {
		return nil, nil, err
	}
	res, err := cl.Sign(ctx, k, signer, uint32(*s.lane), body)
	if err != nil {
		return nil, nil, explain(err)
	}
	return res, cl, nil
}

func uniquenessTag(e *env, home, keyFile, number string) (tx.Hash32, error) {
	if number == "" {
		fmt.Fprint(e.stderr, "Resident ID number (18 characters, from the card) / 公民身份号码: ")
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && line == "" {
			return tx.Hash32{}, fmt.Errorf("%w: no ID number given (use --id-number or type it at the prompt)", errUsage)
		}
		number = strings.TrimSpace(line)
	}
	n, err := idnumber.Parse(number)
	if err != nil {
		return tx.Hash32{}, err
	}
	if keyFile == "" {
		keyFile = district.UniquenessKeyFile(home)
	}
	hk, err := key.ReadHMACFile(keyFile)
	if err != nil {
		return tx.Hash32{}, err
	}
	return idnumber.UniquenessTag(hk, n), nil
}

func registrarRegister(ctx context.Context, e *env, args []string) error {
	c := find("registrar register")
	fs := c.flags(e)
	s := addSigner(fs, e)
	n := addNode(fs.String, e)
	reqFile := fs.String("request", "", "the resident's request.json from imi resident keygen (required)")
	number := fs.String("id-number", "", "the 18-character ID number from the card; never sent. Omit it to type it at a prompt (a flag shows in the process list and shell history)")
	ukey := fs.String("uniqueness-key", "", "registrars' HMAC key file (default: --home's keys/registrar-uniqueness.key)")
	assurance := fs.String("assurance", "high", "identity assurance: high (card chip checked in person) or substantial")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("request", *reqFile); err != nil {
		return err
	}
	// Validated before anything is sent: a mistyped number must not anchor
	// a DID under the wrong uniqueness tag.
	tag, err := uniquenessTag(e, *s.home, *ukey, *number)
	if err != nil {
		return err
	}
	var req Request
	if err := readJSONFile(*reqFile, &req); err != nil {
		return err
	}
	res, _, err := s.submit(ctx, n, &tx.RegisterResident{DID: req.DID, Key: req.Key, RecoveryHash: req.RecoveryHash, UniquenessTag: tag, Assurance: *assurance})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Registered %s at height %d (tx %s).\n", req.DID, res.Height, res.Hash)
	return nil
}

func registrarReproof(ctx context.Context, e *env, args []string) error {
	c := find("registrar reproof")
	fs := c.flags(e)
	s := addSigner(fs, e)
	n := addNode(fs.String, e)
	d := fs.String("did", "", "the resident's existing DID (required)")
	reqFile := fs.String("request", "", "request.json of the resident's new keys (required)")
	number := fs.String("id-number", "", "the ID number from the card; never sent. Omit it to type it at a prompt")
	ukey := fs.String("uniqueness-key", "", "registrars' HMAC key file (default: --home's keys/registrar-uniqueness.key)")
	assurance := fs.String("assurance", "high", "identity assurance: high or substantial")
	if err := parse(fs, args); err != nil {
		return err
	}
	for _, f := range [][2]string{{"did", *d}, {"request", *reqFile}} {
		if err := need(f[0], f[1]); err != nil {
			return err
		}
	}
	if _, err := did.Parse(*d); err != nil {
		return err
	}
	tag, err := uniquenessTag(e, *s.home, *ukey, *number)
	if err != nil {
		return err
	}
	var req Request
	if err := readJSONFile(*reqFile, &req); err != nil {
		return err
	}
	res, _, err := s.submit(ctx, n, &tx.Reproof{DID: *d, UniquenessTag: tag, NewKey: req.Key, NewRecoveryHash: req.RecoveryHash, Assurance: *assurance})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Re-proofed %s at height %d (tx %s): the new key is bound and the old one stopped working in that block.\n", *d, res.Height, res.Hash)
	return nil
}

func registrarDeactivate(ctx context.Context, e *env, args []string) error {
	c := find("registrar deactivate")
	fs := c.flags(e)
	s := addSigner(fs, e)
	n := addNode(fs.String, e)
	d := fs.String("did", "", "the resident's DID (required)")
	reason := fs.String("reason", "", "deceased, moved_away, registration_error or resident_request (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("did", *d); err != nil {
		return err
	}
	if err := need("reason", *reason); err != nil {
		return err
	}
	res, _, err := s.submit(ctx, n, &tx.Deactivate{DID: *d, Reason: strings.TrimSpace(*reason)})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Deactivated %s (%s) at height %d (tx %s).\n", *d, *reason, res.Height, res.Hash)
	return nil
}
