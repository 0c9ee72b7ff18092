// Agent output Markdown: normal Markdown renders; no raw HTML, no unsafe link, no image load
// ever comes out, whatever the input.
import { describe, expect, test } from "vitest";

import { isSafeUrl, renderMarkdown } from "../src/lib/markdown";

const REL = 'target="_blank" rel="noopener noreferrer nofollow"';

/** Tags and attributes the renderer may emit; anything else is a failure. */
const TAGS = new Set([
  "p", "a", "em", "strong", "s", "code", "pre", "blockquote", "hr", "br",
  "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li",
  "table", "thead", "tbody", "tr", "th", "td",
]);
const ATTRS = new Set(["href", "target", "rel", "class", "title", "style", "start"]);

/** Checks every tag of the output against the allowlist, and every href is safe. */
function expectSafe(html: string): void {
  for (const m of html.matchAll(/<\/?([a-zA-Z][a-zA-Z0-9]*)([^>]*)>/g)) {
    const [, tag = "", rest = ""] = m;
    expect(TAGS.has(tag.toLowerCase()), `tag <${tag}> in ${html}`).toBe(true);
    for (const a of rest.matchAll(/\s([^\s=]+)="([^"]*)"/g)) {
      const [, name = "", value = ""] = a;
      expect(ATTRS.has(name.toLowerCase()), `attribute ${name} in ${html}`).toBe(true);
      if (name === "href") expect(isSafeUrl(value.replace(/&amp;/g, "&")), `href ${value}`).toBe(true);
      if (name === "style") expect(value).toMatch(/^text-align:(left|right|center)$/);
    }
    // Nothing outside quoted attributes: no unquoted attribute can hide in a tag.
    expect(rest.replace(/\s[^\s=]+="[^"]*"/g, "").trim()).toBe("");
  }
  expect(html).not.toMatch(/<(script|img|iframe|svg|style|object|embed|form|input|math)/i);
}

describe("normal Markdown", () => {
  test("headings, emphasis, lists, quotes, rules", () => {
    const html = renderMarkdown("# Title\n\n## Sub\n\n*em* **strong** ~~gone~~\n\n- a\n- b\n\n3. three\n4. four\n\n> quoted\n\n---\n");
    expect(html).toContain("<h1>Title</h1>");
    expect(html).toContain("<h2>Sub</h2>");
    expect(html).toContain("<em>em</em> <strong>strong</strong> <s>gone</s>");
    expect(html).toContain("<ul>\n<li>a</li>\n<li>b</li>\n</ul>");
    expect(html).toContain('<ol start="3">');
    expect(html).toContain("<blockquote>\n<p>quoted</p>\n</blockquote>");
    expect(html).toContain("<hr>");
    expectSafe(html);
  });

  test("code fences and inline code, escaped, with a language class", () => {
    const html = renderMarkdown('```ts\nconst a = "<b>" && x < 3;\n```\n\nuse `<script>` here');
    expect(html).toContain(
      '<pre><code class="language-ts">const a = &quot;&lt;b&gt;&quot; &amp;&amp; x &lt; 3;\n</code></pre>',
    );
    expect(html).toContain("<code>&lt;script&gt;</code>");
    expectSafe(html);
  });

  test("a fence's info string cannot break out of its class", () => {
    const html = renderMarkdown('```"><img src=x onerror=alert(1)>\nx\n```');
    expect(html).not.toContain("<img");
    expectSafe(html);
  });

  test("tables", () => {
    const html = renderMarkdown("| a | b |\n|:--|--:|\n| 1 | 2 |\n");
    expect(html).toContain("<table>");
    expect(html).toContain('<th style="text-align:left">a</th>');
    expect(html).toContain('<td style="text-align:right">2</td>');
    expectSafe(html);
  });

  test("links open in a new tab without referrer or opener", () => {
    expect(renderMarkdown("[docs](https://example.com/a?b=1&c=2)")).toBe(
      `<p><a href="https://example.com/a?b=1&amp;c=2" ${REL}>docs</a></p>\n`,
    );
    expect(renderMarkdown("<mailto:me@example.com>")).toContain(`<a href="mailto:me@example.com" ${REL}>`);
    expect(renderMarkdown("[x](HTTP://EXAMPLE.COM)")).toContain('href="HTTP://EXAMPLE.COM"');
  });

  test("bare URLs become links (linkify), with the same attributes", () => {
    const html = renderMarkdown("see https://example.com/x and www.example.org");
    expect(html).toContain(`<a href="https://example.com/x" ${REL}>https://example.com/x</a>`);
    expect(html).toContain(`<a href="http://www.example.org" ${REL}>www.example.org</a>`);
  });

  test("a link title is kept, escaped", () => {
    const html = renderMarkdown('[x](https://e.com "a \\"quote\\" <b>")');
    expect(html).toContain('title="a &quot;quote&quot; &lt;b&gt;"');
    expectSafe(html);
  });

  test("plain text with entities stays text", () => {
    expect(renderMarkdown("5 &lt; 6 &amp; a&b &copy;")).toBe("<p>5 &lt; 6 &amp; a&amp;b ©</p>\n");
  });
});

describe("malicious input", () => {
  test.each([
    ["a script tag", "<script>alert(1)</script>"],
    ["a script block", "<script>\nalert(1)\n</script>\n"],
    ["an image with onerror", '<img src=x onerror="alert(1)">'],
    ["inline HTML in a paragraph", "hello <b onclick=alert(1)>there</b>"],
    ["an iframe", '<iframe src="https://evil.example"></iframe>'],
    ["an svg", "<svg onload=alert(1)>"],
    ["an HTML comment", "<!-- <script>alert(1)</script> -->"],
    ["a style block", "<style>body{display:none}</style>"],
    ["entity-encoded tags", "&lt;script&gt;alert(1)&lt;/script&gt;"],
    ["numeric entities for a tag", "&#60;script&#62;alert(1)&#60;/script&#62;"],
    ["HTML in a link text", "[<img src=x onerror=alert(1)>](https://e.com)"],
    ["HTML in an image alt", '![<script>alert(1)</script>"](https://e.com/i.png)'],
    ["HTML in a heading", "# <script>alert(1)</script>"],
    ["HTML in a table cell", "| a |\n|---|\n| <img src=x onerror=alert(1)> |"],
    ["HTML in a list", "- <a href=javascript:alert(1)>x</a>"],
    ["a quote breaking out of href", '[x](https://e.com/"onmouseover="alert(1))'],
    ["a quote breaking out of an autolink", '<https://e.com/"onmouseover="alert(1)>'],
    ["nested brackets", "[[x](javascript:alert(1))](https://e.com)"],
    ["an image in a link", "[![alt](https://e.com/i.png)](https://e.com)"],
    ["a reference link to javascript", "[x][r]\n\n[r]: javascript:alert(1)"],
    ["a very deep nesting", "> ".repeat(500) + "x"],
    ["deep emphasis", "*".repeat(2000) + "x" + "*".repeat(2000)],
  ])("%s", (_, source) => {
    expectSafe(renderMarkdown(source));
  });

  test("raw HTML comes out as visible text", () => {
    expect(renderMarkdown("<script>alert(1)</script>")).toBe("<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\n");
    expect(renderMarkdown('<img src=x onerror="alert(1)">')).toBe(
      "<p>&lt;img src=x onerror=&quot;alert(1)&quot;&gt;</p>\n",
    );
  });

  test.each([
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "javascript&#58;alert(1)",
    "jav&#x61;script:alert(1)",
    "&#106;avascript:alert(1)",
    "%6Aavascript:alert(1)",
    "vbscript:msgbox(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "data:image/png;base64,iVBORw0KGgo=",
    "file:///etc/passwd",
    "//evil.example/x",
    "/relative/path",
    "relative",
    "#fragment",
    "ftp://example.com",
    "<javascript:alert(1)>",
  ])("a link to %s stays text", (url) => {
    const html = renderMarkdown(`[click](${url})`);
    expect(html).not.toContain("<a");
    expect(html).toContain("click");
    expectSafe(html);
  });

  test.each(["<javascript:alert(1)>", "<data:text/html,hi>", "<vbscript:x>"])("an autolink %s stays text", (src) => {
    const html = renderMarkdown(src);
    expect(html).not.toContain("<a");
    expectSafe(html);
  });

  test("a javascript: URL is never linkified", () => {
    const html = renderMarkdown("javascript:alert(1) and javascript://example.com/%0aalert(1)");
    expect(html).not.toContain("<a");
  });
});

describe("images are not loaded", () => {
  test("an image becomes a link to it, labelled with its alt text", () => {
    expect(renderMarkdown("![a cat](https://e.com/cat.png)")).toBe(
      `<p><a href="https://e.com/cat.png" ${REL} class="md-image">a cat</a></p>\n`,
    );
  });

  test("without alt text, the link shows the URL", () => {
    expect(renderMarkdown("![](https://e.com/cat.png)")).toContain(">https://e.com/cat.png</a>");
  });

  test("an image inside a link is its alt text (no link in a link)", () => {
    const html = renderMarkdown("[![badge](https://e.com/b.svg)](https://e.com)");
    expect(html).toBe(`<p><a href="https://e.com" ${REL}>badge</a></p>\n`);
  });

  test.each(["data:image/png;base64,iVBORw0KGgo=", "javascript:alert(1)", "/local.png"])(
    "an image of %s is text",
    (src) => {
      const html = renderMarkdown(`![x](${src})`);
      expect(html).not.toContain("<a");
      expect(html).not.toContain("<img");
    },
  );

  test("a reference-style image", () => {
    const html = renderMarkdown("![logo][l]\n\n[l]: https://e.com/l.png");
    expect(html).toContain(`<a href="https://e.com/l.png" ${REL} class="md-image">logo</a>`);
    expect(html).not.toContain("<img");
  });
});

describe("isSafeUrl", () => {
  test("http, https and mailto only, any case", () => {
    for (const url of ["http://a", "https://a", "mailto:a@b", "HTTPS://A", " https://a"]) expect(isSafeUrl(url)).toBe(true);
    for (const url of ["javascript:x", "data:x", "", "/a", "httpx://a", "xhttp://a", "tel:1"]) expect(isSafeUrl(url)).toBe(false);
  });
});
