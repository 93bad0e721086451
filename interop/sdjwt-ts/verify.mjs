// verify.mjs: verify one SD-JWT VC presentation with @sd-jwt/sd-jwt-vc.
// stdin:  {"sdjwt","issuerJwk","requireKeyBinding","aud","nonce","requiredClaims",
//          "statusListToken","statusListIssuerJwk","now"}
// stdout: {"ok":true,"claims":{...},"status":n|null} or {"ok":false,"error":"..."}
// See makeVerifier in lib.mjs for what is checked.
import { main, makeVerifier } from "./lib.mjs";

main(async (req) => makeVerifier(req)(req.sdjwt));
