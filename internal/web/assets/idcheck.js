// idcheck.js checks a resident ID number (GB 11643-1999) as it is typed, in
// every input with a data-idcheck attribute, and says the result in an
// aria-live region next to the field. The attribute's value may name that
// region (its id; its data-ok, data-length, data-chars, data-date and
// data-check attributes then give the words); without one the script adds
// a region with words of its own. The server checks every number again:
// this is a convenience for the clerk, not a control.
//
// It runs under the portal's Content-Security-Policy (script-src 'self'):
// no inline code, no eval, listeners only.
(function () {
  "use strict";

  // Weights are 2^(17-i) mod 11, as GB 11643-1999 defines them.
  var WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

  var WORDS = {
    en: {
      ok: "The number is well formed and its check digit matches.",
      length: "A resident ID number has 18 characters.",
      chars: "A resident ID number is 17 digits followed by a digit or X.",
      date: "The birth date in the number is not a real date.",
      check: "The check digit does not match: the number was probably mistyped."
    },
    zh: {
      ok: "号码格式正确，校验码相符。",
      length: "居民身份证号码应为18位。",
      chars: "身份证号码应为17位数字加一位数字或X。",
      date: "号码中的出生日期无效。",
      check: "校验码不符，号码可能输入有误。"
    }
  };

  function checkChar(body) {
    var sum = 0;
    for (var i = 0; i < 17; i++) {
      sum += (body.charCodeAt(i) - 48) * WEIGHTS[i];
    }
    var c = (12 - (sum % 11)) % 11;
    return c === 10 ? "X" : String(c);
  }

  function realDate(s) {
    var y = +s.slice(0, 4), m = +s.slice(4, 6), d = +s.slice(6, 8);
    if (y < 1800 || m < 1 || m > 12 || d < 1) {
      return false;
    }
    var days = [31, (y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0)) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    return d <= days[m - 1];
  }

  // verdict is the word key for v, or "" while v may still become a valid
  // number. final is true when the clerk has left the field.
  function verdict(v, final) {
    if (v === "") {
      return "";
    }
    if (v.length > 18) {
      return "length";
    }
    if (!/^[0-9]*$/.test(v.slice(0, 17)) || (v.length === 18 && !/^[0-9X]$/.test(v.charAt(17)))) {
      return "chars";
    }
    if (v.length < 18) {
      return final ? "length" : "";
    }
    if (!realDate(v.slice(6, 14))) {
      return "date";
    }
    return checkChar(v.slice(0, 17)) === v.charAt(17) ? "ok" : "check";
  }

  function setup(input, n) {
    var lang = (document.documentElement.getAttribute("lang") || "zh").slice(0, 2) === "en" ? "en" : "zh";
    var words = {};
    var k;
    for (k in WORDS[lang]) {
      words[k] = WORDS[lang][k];
    }
    var name = input.getAttribute("data-idcheck");
    var region = name ? document.getElementById(name) : null;
    if (!region) {
      region = document.createElement("p");
      region.id = (input.id || "idcheck" + n) + "_check";
      region.className = "help";
      region.setAttribute("aria-live", "polite");
      input.parentNode.insertBefore(region, input.nextSibling);
      var by = input.getAttribute("aria-describedby");
      input.setAttribute("aria-describedby", by ? by + " " + region.id : region.id);
    }
    for (k in words) {
      var w = region.getAttribute("data-" + k);
      if (w) {
        words[k] = w;
      }
    }
    var last = null;
    function show(final) {
      var key = verdict(input.value.replace(/\s+/g, "").toUpperCase(), final);
      if (key === last) {
        return; // say each verdict once, not at every key press
      }
      last = key;
      region.textContent = key ? words[key] : "";
      region.className = "help" + (key === "ok" ? " valid" : key ? " invalid" : "");
      if (key && key !== "ok") {
        input.setAttribute("aria-invalid", "true");
      } else {
        input.removeAttribute("aria-invalid"); // valid, or not yet judged
      }
    }
    input.addEventListener("input", function () { show(false); });
    input.addEventListener("blur", function () { show(true); });
  }

  var inputs = document.querySelectorAll("input[data-idcheck]");
  for (var i = 0; i < inputs.length; i++) {
    setup(inputs[i], i);
  }
})();
