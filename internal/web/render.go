package web

import (
	"bytes"
	"html/template"
	"net/http"
	"strings"
	"time"
)

// message is what a page tells its reader: a catalogue key, or words given
// in both languages (the ledger's and the desk's refusals come that way).
type message struct{ key, zh, en string }

func say(k string) message        { return message{key: k} }
func words(zh, en string) message { return message{zh: zh, en: en} }
func (m message) empty() bool     { return m == message{} }
func (m message) in(l string) string {
	if m.key != "" {
		return tr(l, m.key)
	}
	if l == "en" || m.zh == "" {
		return m.en
	}
	return m.zh
}

// langOf is the reader's language: Simplified Chinese unless they chose
// English.
func langOf(r *http.Request) string {
	if c, err := r.Cookie(langCookie); err == nil && c.Value == "en" {
		return "en"
	}
	return "zh"
}

// page is what every template sees.
type page struct {
	Lang    string
	Title   string
	Path    string
	Who     string // who is signed in, in words; "" for nobody
	Kind    string // "resident", "staff" or ""
	Ward    string // the ward a guardian is acting for, in words
	Counter bool   // staff who may use the counter
	Posted  bool   // the answer to a form: switching language would lose it
	Flash   string
	Error   string
	Data    any
	sess    *session
	status  int
}

// T translates a catalogue key.
func (pg *page) T(k string) string { return tr(pg.Lang, k) }

// Pick chooses between a Chinese and an English text from the ledger.
func (pg *page) Pick(zh, en string) string {
	if pg.Lang == "en" && en != "" || zh == "" {
		return en
	}
	return zh
}

// Token issues a one-time token for one form.
func (pg *page) Token() string {
	if pg.sess == nil {
		return ""
	}
	return pg.sess.newToken()
}

// Other is the language the switch offers.
func (pg *page) Other() string {
	if pg.Lang == "en" {
		return "zh"
	}
	return "en"
}

// Date formats a time for the reader, in China Standard Time.
func (pg *page) Date(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(cst).Format("2006-01-02 15:04")
}

// Day formats a date.
func (pg *page) Day(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(cst).Format("2006-01-02")
}

var cst = time.FixedZone("CST", 8*3600)

var funcs = template.FuncMap{
	"join": strings.Join,
}

// render writes page name with data.
func (p *Portal) render(w http.ResponseWriter, r *request, status int, name, title string, data any, errMsg message) {
	pg := &page{Lang: r.lang, Title: tr(r.lang, title), Path: r.URL.Path, Data: data, sess: r.sess, status: status, Posted: r.Method == http.MethodPost}
	if !errMsg.empty() {
		pg.Error = errMsg.in(r.lang)
	}
	if r.sess != nil {
		if f := r.sess.takeFlash(); f != "" {
			pg.Flash = tr(r.lang, f)
		}
		switch {
		case r.sess.resident != nil:
			pg.Kind, pg.Who = "resident", r.sess.resident.name
			if w := r.sess.wardOf(); w != nil {
				pg.Ward = w.name
			}
		case r.sess.staff != nil:
			pg.Kind, pg.Who = "staff", r.sess.staff.Name+" · "+r.sess.staff.Authority
			pg.Counter = r.sess.staff.may(counterStaff)
		}
	}
	t := p.pages[name]
	if t == nil {
		p.log.Error("no such page template", "page", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", pg); err != nil {
		p.log.Error("page template failed", "page", name, "err", err)
		http.Error(w, "internal error / 内部错误", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// fail shows an error page with a message the reader can act on.
func (p *Portal) fail(w http.ResponseWriter, r *request, status int, m message) {
	p.render(w, r, status, "error", "title.error", nil, m)
}
