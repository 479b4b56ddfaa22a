/* render.js — an answer's markdown, with its math and code, as DOM nodes that are safe to show.
 *
 * The libraries are Debian's (embedded at build time, served from /vendor/, licences at
 * /vendor/LICENSES.txt): markdown-it turns the text into HTML (raw HTML in the text is escaped,
 * not passed through), KaTeX writes each formula as MathML, highlight.js marks up code. That HTML
 * never reaches the page as it is: DOMPurify parses it into an inert fragment and removes every
 * element and attribute outside the allow-lists below (no scripts, no event handlers, no style
 * attributes, links only to http(s) and mailto), and only the cleaned fragment is inserted.
 *
 * Math is MathML, which the browser lays out itself: KaTeX's HTML output would need inline
 * styles (the page's Content-Security-Policy allows none) and its fonts; MathML needs neither,
 * so the policy stays as strict as before.
 *
 * Limits, against slow or hostile text (the libraries are old and have known slow inputs):
 * answers longer than RENDER_CAP are shown as plain text, a formula longer than MATH_CAP (or past
 * the MATH_COUNT_CAP-th) as its TeX, code longer than HIGHLIGHT_CAP unhighlighted; nesting stops
 * at DEEP. */
"use strict";

window.WhaleRender = (() => {
  const RENDER_CAP = 60000;
  const MATH_CAP = 4000;
  const MATH_COUNT_CAP = 1000; /* formulas laid out per answer; later ones are shown as their TeX */
  const HIGHLIGHT_CAP = 20000;
  /* markdown-it drops the rest of a text once its blocks nest deeper than its maxNesting, so an
   * answer whose lines might nest past DEEP (quote and list markers, and indentation: a deliberate
   * over-estimate) is shown as plain text instead, all of it */
  const MAX_NESTING = 50;
  const DEEP = 30;
  /* markdown-it 8 scans to the end of the text for each "[label](" whose destination never ends:
   * past this many "](" in one answer, [text](url) is left as text (bare URLs still link) */
  const LINKS_CAP = 2000;
  const CACHE_MAX = 500; /* formulas and code blocks rendered, kept for the next repaint */

  const TAGS = ["a", "blockquote", "br", "code", "del", "div", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "li", "ol", "p", "pre", "s", "span", "strong", "sub", "sup", "table", "tbody", "td", "th", "thead", "tr",
    "ul",
    /* KaTeX's MathML */
    "math", "semantics", "annotation", "mrow", "mi", "mn", "mo", "ms", "mtext", "mspace", "msup", "msub",
    "msubsup", "mfrac", "msqrt", "mroot", "mover", "munder", "munderover", "mtable", "mtr", "mtd", "mstyle",
    "mpadded", "mphantom", "menclose", "merror", "mmultiscripts", "mprescripts", "none"];
  const ATTRS = ["href", "title", "class", "start", "colspan", "rowspan",
    "xmlns", "display", "displaystyle", "mathvariant", "mathcolor", "mathbackground", "encoding", "stretchy",
    "fence", "separator", "lspace", "rspace", "minsize", "maxsize", "symmetric", "largeop", "movablelimits",
    "accent", "accentunder", "columnalign", "columnlines", "columnspacing", "rowalign", "rowlines", "rowspacing",
    "frame", "framespacing", "width", "height", "depth", "voffset", "linethickness", "scriptlevel", "notation",
    "align"];
  const PURIFY = {
    ALLOWED_TAGS: TAGS, ALLOWED_ATTR: ATTRS, ALLOW_DATA_ATTR: false,
    /* DOMPurify tests every attribute value against this: a value with a scheme must be http(s)
     * or mailto; values without one (display="block", a class) pass, as with its default */
    ALLOWED_URI_REGEXP: /^(?:(?:https?|mailto):|[^a-z]|[a-z+.-]+(?:[^a-z+.\-:]|$))/i, RETURN_DOM_FRAGMENT: true,
  };

  const parsers = {}; /* "links", "nolinks": markdown-it configured as below, made on first use */
  /* KaTeX and highlight.js (half the page's bytes) load on the first formula or named code block;
   * what was drawn before one arrived is drawn again when it does */
  let onLibrary = null;
  const libState = {}; /* served name -> loading, ready, failed */
  const cache = new Map();

  function remember(key, make) {
    let v = cache.get(key);
    if (v === undefined) {
      v = make();
      if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value);
      cache.set(key, v);
    }
    return v;
  }

  function escapeHtml(s) {
    return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  /* ---- math: \( \), \[ \], $ $ and $$ $$, as DeepSeek's answers write them --------------------- */

  function library(name, global) {
    if (libState[name] === "ready" || (!libState[name] && window[global])) {
      libState[name] = "ready";
      return window[global];
    }
    if (!libState[name]) {
      libState[name] = "loading";
      const s = document.createElement("script");
      s.src = `/vendor/${name}`;
      s.onload = () => {
        libState[name] = window[global] ? "ready" : "failed";
        cache.clear();
        if (libState[name] === "ready" && onLibrary) onLibrary();
      };
      s.onerror = () => { libState[name] = "failed"; };
      document.head.append(s);
    }
    return null;
  }

  /* Macro definitions let a short formula expand past KaTeX 0.16.4's maxExpand (\edef doubling a
   * macro: 281 characters made 21 MB of MathML in 2.6 s; fixed in KaTeX 0.16.10, not in Debian's):
   * a formula that defines anything is shown as its TeX. */
  const DEFINES = /\\(?:[egx]?def|let|futurelet|global|long|(?:re|provide)?newcommand|(?:re)?newenvironment|expandafter|csname)(?![a-zA-Z])/;

  function tex(src, display, env) {
    env.whaleMath = (env.whaleMath || 0) + 1;
    const katex = library("katex.js", "katex");
    if (src.length > MATH_CAP || env.whaleMath > MATH_COUNT_CAP || !katex || DEFINES.test(src)) {
      return `<code class="tex">${escapeHtml(src)}</code>`;
    }
    return remember(`${display ? "D" : "I"}${src}`, () => {
      try {
        return katex.renderToString(src, {
          output: "mathml", displayMode: display, throwOnError: false, trust: false, strict: "ignore",
          maxExpand: 500, maxSize: 50,
        });
      } catch (_) { /* what KaTeX cannot lay out is shown as its TeX */
        return `<code class="tex">${escapeHtml(src)}</code>`;
      }
    });
  }

  /* Inline math. `$` follows pandoc's rule (a non-space after the opening $, a non-space before the
   * closing one, no digit after it), so that "$5 and $10" stays text; its closing $ is the next
   * one not written \$, so each $ is looked at once. A delimiter with no closer after some position has none
   * after any later one either: remembered per paragraph, so a run of openers costs linear time. */
  function mathInline(state, silent) {
    const src = state.src, pos = state.pos, max = state.posMax;
    const c = src.charCodeAt(pos);
    let open, close, display;
    if (c === 0x5c) {
      const n = src.charCodeAt(pos + 1);
      if (n === 0x28) [open, close, display] = ["\\(", "\\)", false];
      else if (n === 0x5b) [open, close, display] = ["\\[", "\\]", true];
      else return false;
    } else if (c === 0x24) {
      if (src.charCodeAt(pos + 1) === 0x24) [open, close, display] = ["$$", "$$", true];
      else [open, close, display] = ["$", "$", false];
    } else return false;
    const start = pos + open.length;
    let end;
    if (open === "$") {
      if (start >= max || /\s/.test(src[start])) return false;
      for (end = src.indexOf("$", start); end > 0 && src[end - 1] === "\\"; end = src.indexOf("$", end + 1)); /* \$ is a dollar */
      if (end < 0 || end >= max || /\s/.test(src[end - 1]) || /[0-9]/.test(src[end + 1] || "")) return false;
    } else {
      const none = state.whaleNoClose || (state.whaleNoClose = {});
      if (none[close] !== undefined && none[close] <= start) return false;
      end = src.indexOf(close, start);
      if (end < 0) {
        none[close] = start;
        return false;
      }
      if (end + close.length > max) return false;
    }
    const body = src.slice(start, end);
    if (!body.trim()) return false;
    if (!silent) {
      const t = state.push("math_inline", "math", 0);
      t.content = body;
      t.markup = open;
      t.meta = { display };
    }
    state.pos = end + close.length;
    return true;
  }

  /* Display math as a block: a line starting with $$ or \[ up to a line ending with $$ or \]
   * (blank lines inside allowed). Unclosed (an answer still streaming), it is left to the
   * paragraph until the closer arrives. */
  function mathBlock(state, startLine, endLine, silent) {
    if (state.sCount[startLine] - state.blkIndent >= 4) return false; /* indented code */
    const first = state.src.slice(state.bMarks[startLine] + state.tShift[startLine], state.eMarks[startLine]);
    let open, close;
    if (first.startsWith("$$")) [open, close] = ["$$", "$$"];
    else if (first.startsWith("\\[")) [open, close] = ["\\[", "\\]"];
    else return false;
    const rest = first.slice(open.length).trimEnd();
    const lines = [];
    let line = startLine, found = false;
    if (rest.length >= close.length && rest.endsWith(close)) {
      lines.push(rest.slice(0, -close.length));
      found = true;
    } else if (rest.includes(close)) {
      return false; /* "$$E=mc^2$$ is famous": inline math in a paragraph */
    } else {
      /* a scan from some line that met no closer before line `to` (the end of the text, or of the
       * list item or quote around it) means none from a later line before `to` either:
       * remembered for the whole text, so a run of openers costs linear time */
      const none = state.env.whaleNoBlockClose || (state.env.whaleNoBlockClose = {});
      const key = `${close}:${endLine}:${state.blkIndent}`, seen = none[key];
      if (seen && seen.from <= startLine && startLine < seen.to) return false;
      lines.push(rest);
      for (line = startLine + 1; line < endLine; line++) {
        if (state.sCount[line] < state.blkIndent) break; /* the end of the enclosing list item or quote */
        const l = state.src.slice(state.bMarks[line] + state.tShift[line], state.eMarks[line]).trimEnd();
        if (l.endsWith(close)) {
          lines.push(l.slice(0, -close.length));
          found = true;
          break;
        }
        lines.push(l);
      }
      if (!found) none[key] = { from: startLine, to: line };
    }
    const body = lines.join("\n");
    if (!found || !body.trim()) return false;
    if (silent) return true;
    state.line = line + 1;
    const t = state.push("math_block", "math", 0);
    t.block = true;
    t.content = body;
    t.markup = open;
    t.map = [startLine, state.line];
    return true;
  }

  /* ---- code ------------------------------------------------------------------------------------ */

  /* Markup for a fenced block's code in a named language, or "" (markdown-it then escapes it). */
  function highlight(code, lang) {
    if (!lang || code.length > HIGHLIGHT_CAP) return "";
    const hl = library("highlight.js", "hljs");
    if (!hl || !hl.getLanguage(lang)) return "";
    return remember(`C${lang}\n${code}`, () => {
      try {
        return hl.highlight(lang, code, true).value;
      } catch (_) {
        return "";
      }
    });
  }

  function parser(links) {
    const name = links ? "links" : "nolinks";
    if (parsers[name]) return parsers[name];
    if (!window.markdownit || !window.DOMPurify) return null;
    const md = window.markdownit({ html: false, linkify: true, breaks: true, highlight, maxNesting: MAX_NESTING });
    md.validateLink = (url) => /^(?:https?:|mailto:)/i.test(url.trim());
    md.disable("image"); /* no remote images (the policy forbids them): ![x](u) is a link after "!" */
    if (!links) md.disable("link");
    md.inline.ruler.before("escape", "math_inline", mathInline);
    md.block.ruler.after("blockquote", "math_block", mathBlock, { alt: ["paragraph", "reference", "blockquote", "list"] });
    md.renderer.rules.math_inline = (tokens, i, _, env) => tex(tokens[i].content, tokens[i].meta.display, env);
    md.renderer.rules.math_block = (tokens, i, _, env) => `<div class="math-block">${tex(tokens[i].content, true, env)}</div>`;
    parsers[name] = md;
    return md;
  }

  /* ---- the page's own additions, made as DOM after cleaning ------------------------------------- */

  function decorate(frag, copyText) {
    for (const a of frag.querySelectorAll("a")) {
      if (!/^(?:https?:|mailto:)/i.test(a.getAttribute("href") || "")) { /* only absolute web and mail links */
        a.replaceWith(...a.childNodes);
        continue;
      }
      a.target = "_blank";
      a.rel = "noopener noreferrer nofollow";
    }
    for (const pre of frag.querySelectorAll("pre")) {
      const code = pre.querySelector("code");
      if (!code) continue;
      const m = /(?:^|\s)language-(\S+)/.exec(code.className);
      if (m) {
        const lang = document.createElement("span");
        lang.className = "lang";
        lang.textContent = m[1];
        pre.prepend(lang);
      }
      if (code.querySelector("[class^='hljs-']")) code.classList.add("hljs");
      const copy = document.createElement("button");
      copy.type = "button";
      copy.className = "copy";
      copy.textContent = "Copy";
      copy.addEventListener("click", () => copyText(code.textContent, copy));
      pre.append(copy);
    }
    return frag;
  }

  /* An over-estimate of the nesting a line opens: each quote marker one level, each list marker
   * two (the list and its item), and its indentation (at least 2 characters per enclosing list,
   * each of those two levels). Lines without a marker open nothing; fenced code is skipped. */
  const MARKERS = /^[ \t]*(?:(?:>|[-*+](?=[ \t]|$)|\d{1,9}[.)](?=[ \t]|$))[ \t]*)+/;
  const FENCE_LINE = /^[ \t]*(?:`{3,}|~{3,})/;

  function tooDeep(src) {
    let fenced = false;
    for (const line of src.split("\n")) {
      if (FENCE_LINE.test(line)) fenced = !fenced;
      if (fenced) continue;
      const m = MARKERS.exec(line);
      if (!m) continue;
      const indent = /^[ \t]*/.exec(m[0])[0].replace(/\t/g, "    ").length;
      const quotes = (m[0].match(/>/g) || []).length;
      const lists = (m[0].match(/[-*+](?=[ \t]|$)|\d{1,9}[.)](?=[ \t]|$)/g) || []).length;
      if (indent + quotes + 2 * lists >= DEEP) return true;
    }
    return false;
  }

  function plain(src) {
    const p = document.createElement("p");
    p.className = "plain";
    p.textContent = src;
    return p;
  }

  /* A fragment for markdown text (copyText: the page's copy-to-clipboard, for code blocks). Text
   * the libraries cannot take (too long, not loaded, an exception) is shown as plain text. */
  function markdown(src, copyText) {
    const m = src.length <= RENDER_CAP && !tooDeep(src) ? parser(src.split("](", LINKS_CAP + 2).length <= LINKS_CAP + 1) : null;
    if (!m) return plain(src);
    try {
      return decorate(window.DOMPurify.sanitize(m.render(src, {}), PURIFY), copyText);
    } catch (_) {
      return plain(src);
    }
  }

  return {
    markdown,
    /* fn() runs when KaTeX or highlight.js arrives (each loads on first use) */
    onLibrary(fn) { onLibrary = fn; },
    RENDER_CAP,
  };
})();
