package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/imi-city/imi/internal/client"
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
		name:    "status",
		summary: "show the network: height, last block, peers, validators, catching up, health",
		usage:   "[--node URL[,URL...]] [--each] [--json]",
		examples: `  imi status --node http://127.0.0.1:8080,http://127.0.0.1:8081    # the first that answers
  imi status --each --node http://127.0.0.1:26700,http://127.0.0.1:26701,http://127.0.0.1:26702
  imi status --json`,
		run: status,
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
	each := fs.Bool("each", false, "ask every node in --node and show one line per node")
	asJSON := fs.Bool("json", false, "print the raw JSON of /v1/status")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *each {
		return statusEach(ctx, e, *n.nodes, *asJSON)
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	s, err := cl.Status(ctx)
	if err != nil {
		return explain(err)
	}
	if *asJSON {
		return printJSON(e, s)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "chain\t%s (%s / %s)\n", s.ChainID, s.DistrictZH, s.DistrictEN)
	fmt.Fprintf(tw, "node\t%s\n", s.Chain.NodeID)
	fmt.Fprintf(tw, "height\t%d\n", s.Height)
	fmt.Fprintf(tw, "last block\t%s\n", blockAge(s.BlockTime))
	fmt.Fprintf(tw, "app hash\t%s\n", s.AppHash)
	fmt.Fprintf(tw, "catching up\t%s\n", yesNo(s.Chain.CatchingUp))
	fmt.Fprintf(tw, "peers\t%d\n", s.Chain.Peers)
	var power int64
	for _, v := range s.Chain.Validators {
		power += v.Power
	}
	fmt.Fprintf(tw, "validators\t%d, total power %d\n", len(s.Chain.Validators), power)
	for _, v := range s.Chain.Validators {
		fmt.Fprintf(tw, "\t  %s  power %d\n", v.PubKey, v.Power)
	}
	fmt.Fprintf(tw, "authorities\t%d\n", s.Authorities)
	fmt.Fprintf(tw, "residents\t%d\n", s.Residents)
	fmt.Fprintf(tw, "health\t%s\n", s.Health)
	return tw.Flush()
}

// statusEach asks each node on its own, for an operator comparing them.
func statusEach(ctx context.Context, e *env, nodes string, asJSON bool) error {
	var urls []string
	for _, u := range strings.Split(nodes, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	type answer struct {
		Node   string                  `json:"node"`
		Status *httpapi.StatusResponse `json:"status,omitempty"`
		Error  string                  `json:"error,omitempty"`
	}
	answers := make([]answer, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		answers[i].Node = u
		cl, err := client.New(u)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		wg.Go(func() {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			s, err := cl.Status(actx)
			if err != nil {
				answers[i].Error = explain(err).Error()
				return
			}
			answers[i].Status = s
		})
	}
	wg.Wait()
	if asJSON {
		return printJSON(e, answers)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "NODE\tHEIGHT\tLAST BLOCK\tPEERS\tVALIDATORS\tCATCHING UP\tHEALTH\n")
	for _, a := range answers {
		s := a.Status
		if s == nil {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\tno answer: %s\n", a.Node, firstLine(a.Error))
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\t%s\n", a.Node, s.Height, blockAge(s.BlockTime), s.Chain.Peers, len(s.Chain.Validators), yesNo(s.Chain.CatchingUp), s.Health)
	}
	return tw.Flush()
}

// blockAge shows a block time and how long ago it was, by this machine's
// clock.
func blockAge(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.DateTime), time.Since(t).Round(time.Second))
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
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
