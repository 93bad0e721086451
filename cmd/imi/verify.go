package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/ledger"
)

// maxPresentationInput bounds what imi verify reads; the node refuses
// anything larger anyway.
const maxPresentationInput = 256 << 10

// errNotValid is the verdict of a presentation that is not valid. It exits
// with status 1, so a script cannot take a partial result for success.
var errNotValid = errors.New("the presentation is not valid")

func init() {
	register(&command{
		name:    "verify",
		summary: "verify a resident's presentation against the ledger (exit 0 only if valid)",
		usage:   "--aud AUD --nonce N [--node URL] [--json] FILE|-",
		examples: `  imi verify --aud https://bus.example.gov.cn --nonce 7f3a9c… ./presentation.txt
  imi wallet present … | imi verify --aud https://bus.example.gov.cn --nonce 7f3a9c… -
  # --aud and --nonce are the ones the service put in its request; a nonce is accepted once`,
		run: verifyCmd,
	})
}

func verifyCmd(ctx context.Context, e *env, args []string) error {
	c := find("verify")
	fs := c.flags(e)
	n := addNode(fs.String, e)
	aud := fs.String("aud", "", "the audience this service asked the presentation for (required)")
	nonce := fs.String("nonce", "", "the nonce of this request (required; at least 16 characters)")
	asJSON := fs.Bool("json", false, "print the node's answer as JSON")
	src, err := parseOneArg(fs, args)
	if err != nil {
		return err
	}
	if src == "" {
		return fmt.Errorf("%w: name one presentation file, or - for standard input", errUsage)
	}
	if err := need("aud", *aud); err != nil {
		return err
	}
	if err := need("nonce", *nonce); err != nil {
		return err
	}
	pres, err := readPresentation(e, src)
	if err != nil {
		return err
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	res, err := cl.VerifyPresentation(ctx, pres, *aud, *nonce)
	if err != nil {
		// The verdict is unknown, which is not "valid": exit 1 all the same.
		return fmt.Errorf("could not verify: %w", explain(err))
	}
	if *asJSON {
		if err := printJSON(e, res); err != nil {
			return err
		}
	} else {
		var ct *ledger.CredentialType
		if res.Outcome == credential.Valid && res.Type != "" {
			// Only for display names; the verdict does not depend on it.
			ct, _ = cl.CredentialType(ctx, res.Type)
		}
		if err := printResult(e, res, ct); err != nil {
			return err
		}
	}
	if res.Outcome != credential.Valid {
		why := string(res.Outcome)
		if res.Reason != "" {
			why += ", " + res.Reason
		}
		return fmt.Errorf("%w (%s)", errNotValid, why)
	}
	return nil
}

func readPresentation(e *env, src string) (string, error) {
	var b []byte
	var err error
	if src == "-" {
		b, err = io.ReadAll(io.LimitReader(e.stdin, maxPresentationInput+1))
		if err == nil && len(b) > maxPresentationInput {
			err = fmt.Errorf("more than %d bytes", maxPresentationInput)
		}
		if err != nil {
			return "", fmt.Errorf("couldn't read the presentation from standard input: %w", err)
		}
	} else if b, err = readLimited(src, maxPresentationInput); err != nil {
		return "", err
	}
	p := strings.TrimSpace(string(b))
	if p == "" {
		return "", fmt.Errorf("%w: the presentation is empty", errUsage)
	}
	return p, nil
}

// printResult shows the verdict in words; claims appear only when valid.
func printResult(e *env, r *credential.Result, ct *ledger.CredentialType) error {
	w := e.stdout
	fmt.Fprintf(w, "%s — %s / %s\n", strings.ToUpper(strings.ReplaceAll(string(r.Outcome), "_", " ")), r.Message, r.MessageZH)
	if r.Reason != "" {
		fmt.Fprintf(w, "  reason:   %s\n", r.Reason)
	}
	if r.Detail != "" {
		fmt.Fprintf(w, "  detail:   %s\n", r.Detail)
	}
	if r.Type != "" {
		fmt.Fprintf(w, "  type:     %s / %s (%s)\n", r.TypeZH, r.TypeEN, r.Type)
	}
	if r.Issuer != "" {
		fmt.Fprintf(w, "  issuer:   %s / %s (%s)\n", r.IssuerZH, r.IssuerEN, r.Issuer)
	}
	if r.IssuedAt != nil && r.ExpiresAt != nil {
		fmt.Fprintf(w, "  valid:    %s to %s\n", r.IssuedAt.Local().Format(time.DateOnly), r.ExpiresAt.Local().Format(time.DateOnly))
	}
	if r.Height > 0 {
		fmt.Fprintf(w, "  checked against the ledger at height %d\n", r.Height)
	}
	if r.Outcome != credential.Valid {
		return nil
	}
	fmt.Fprintln(w, "  disclosed:")
	var rows [][]string
	for _, name := range r.Disclosed {
		label := name
		if ct != nil {
			if s, ok := ct.Claim(name); ok {
				label = fmt.Sprintf("%s / %s", s.NameZH, s.NameEN)
			}
		}
		rows = append(rows, []string{label, claimValue(r.Claims[name])})
	}
	printTable(w, "    ", rows)
	return nil
}

func claimValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		if x {
			return "yes / 是"
		}
		return "no / 否"
	case nil:
		return "(none)"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
