// bench.mjs: verify a list of presentations (key binding required) over and
// over for a wall time in ONE Node process, one core.
// stdin:  {"presentations":[...],"issuerJwk","aud","nonce","now","seconds",
//          "statusListToken"?,"statusListIssuerJwk"?}
// stdout: {"ok":true,"verified":N,"seconds":s,"perSecond":x}
//         or {"ok":false,"error":"..."} on the first presentation that fails.
import { main, makeVerifier } from "./lib.mjs";

main(async (req) => {
  const list = req.presentations || [];
  if (list.length === 0) throw new Error("no presentations");
  const verifyOne = makeVerifier({ ...req, requireKeyBinding: true });
  const budget = (req.seconds || 5) * 1000;
  const start = performance.now();
  let verified = 0;
  let elapsed = 0;
  for (let i = 0; elapsed < budget; i = (i + 1) % list.length) {
    const r = await verifyOne(list[i]);
    if (!r.ok) return { ok: false, error: `presentation ${i}: ${r.error}` };
    verified++;
    elapsed = performance.now() - start;
  }
  const seconds = elapsed / 1000;
  return { ok: true, verified, seconds, perSecond: verified / seconds };
});
