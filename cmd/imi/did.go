package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/district"
	"github.com/imi-city/imi/internal/httpapi"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

func init() {
	register(&command{
		name:    "did resolve",
		summary: "resolve a DID to its W3C DID document, now or as of a past height",
		usage:   "DID [--height H] [--verify] [--node URL]",
		examples: `  imi did resolve did:imi:…
  imi did resolve did:imi:… --height 120
  imi did resolve did:imi:… --verify     # check a Merkle proof against a signed block header`,
		run: didResolve,
	})
	register(&command{
		name:     "status",
		summary:  "show the network: chain id, height, app hash, validators, health",
		usage:    "[--node URL]",
		examples: `  imi status --node http://127.0.0.1:8080,http://127.0.0.1:8081`,
		run:      status,
	})
	register(&command{
		name:     "tx",
		summary:  "show a committed transaction's outcome",
		usage:    "HASH [--node URL]",
		examples: `  imi tx 6B1F…`,
		run:      txShow,
	})
}

// flagsThenArg lets a positional argument come before the flags.
func flagsThenArg(args []string) (string, []string) {
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		return args[0], args[1:]
	}
	return "", args
}

func didResolve(ctx context.Context, e *env, args []string) error {
	c := find("did resolve")
	fs := c.flags(e)
	n := addNode(fs.String, e)
	height := fs.Int64("height", 0, "resolve as of this block height (default: latest)")
	verify := fs.Bool("verify", false, "verify a Merkle proof of the record against the signed header of the next block")
	id, rest := flagsThenArg(args)
	if err := parse(fs, rest); err != nil {
		return err
	}
	if id == "" {
		id = fs.Arg(0)
	}
	if id == "" {
		return fmt.Errorf("%w: name the DID to resolve", errUsage)
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	r, err := cl.Resolve(ctx, id, *height, *verify)
	if err != nil {
		return explain(err)
	}
	if err := printJSON(e, r.Resolution); err != nil {
		return err
	}
	if !*verify {
		return nil
	}
	if r.Proof == nil {
		return errors.New("the node sent no proof (proofs cover resident DIDs)")
	}
	st, err := cl.Status(ctx)
	if err != nil {
		return explain(err)
	}
	// The state after block H is committed to by the header of block H+1;
	// wait briefly for it if H is the newest block.
	var evidence []byte
	for i := 0; ; i++ {
		evidence, err = cl.CommitJSON(ctx, r.Proof.Height+1)
		if err == nil || i == 20 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		return explain(err)
	}
	h, appHash, err := district.VerifiedAppHash(st.ChainID, evidence)
	if err != nil {
		return fmt.Errorf("the signed header does not verify: %w", err)
	}
	if h != r.Proof.Height+1 {
		return fmt.Errorf("the node sent header %d for a proof at height %d", h, r.Proof.Height)
	}
	if err := r.Proof.Verify(appHash); err != nil {
		return err
	}
	rec, err := ledger.ResidentFromProof(r.Proof)
	if err != nil {
		return err
	}
	if rec.DID != id || !keyMatches(r, rec) {
		return errors.New("the proven record does not match the document the node returned")
	}
	fmt.Fprintf(e.stderr, "verified: the record is in the state committed at height %d (app hash %X in the header of block %d, signed by more than two-thirds of the validators)\n", r.Proof.Height, appHash, h)
	return nil
}

// keyMatches checks that the document the node sent shows the proven key
// (or no key, for a deactivated DID).
func keyMatches(r *httpapi.ResolveResponse, rec *ledger.Resident) bool {
	doc := r.Resolution.Document
	if doc == nil {
		return false
	}
	if rec.Deactivated {
		return len(doc.VerificationMethod) == 0
	}
	return len(doc.VerificationMethod) == 1 && doc.VerificationMethod[0].PublicKeyJwk == did.NewJWK(rec.Key)
}

func status(ctx context.Context, e *env, args []string) error {
	c := find("status")
	fs := c.flags(e)
	n := addNode(fs.String, e)
	if err := parse(fs, args); err != nil {
		return err
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	s, err := cl.Status(ctx)
	if err != nil {
		return explain(err)
	}
	return printJSON(e, s)
}

func txShow(ctx context.Context, e *env, args []string) error {
	c := find("tx")
	fs := c.flags(e)
	n := addNode(fs.String, e)
	h, rest := flagsThenArg(args)
	if err := parse(fs, rest); err != nil {
		return err
	}
	if h == "" {
		h = fs.Arg(0)
	}
	if _, err := tx.ParseHashHex(h); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	r, err := cl.Tx(ctx, h)
	if err != nil {
		return explain(err)
	}
	return printJSON(e, r)
}
