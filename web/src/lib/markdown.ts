/**
 * Agent output Markdown to HTML that is safe to put in the page.
 *
 * The agent's text is untrusted (a prompt injection can make it anything), so:
 * - no raw HTML, ever: markdown-it with `html: false` writes `<tag>` as text, and the HTML
 *   token renderers escape as well in case a rule ever emits one;
 * - links only to `http:`, `https:` and `mailto:` (anything else, `javascript:`, `data:`,
 *   relative, stays text), opened in a new tab with `rel="noopener noreferrer nofollow"`;
 * - images are not loaded (no request to a third party, and the CSP allows none): an image
 *   becomes a link to it, labelled with its alt text;
 * - code is escaped (no highlighter runs).
 *
 * Tables and strikethrough (GitHub style) and bare URLs turned into links are on.
 */

import MarkdownIt from "markdown-it";
import type { RendererRule } from "markdown-it";

const SAFE_URL = /^(?:https?:|mailto:)/i;

/** Whether a link's URL may be a link: http, https or mailto only. */
export function isSafeUrl(url: string): boolean {
  return SAFE_URL.test(url.trim());
}

const md = new MarkdownIt("default", {
  html: false,
  linkify: true,
  typographer: false,
  breaks: false,
});

// Every link, autolink, linkify match and image passes here after normalization (entities
// decoded, percent-encoded): what fails stays text.
md.validateLink = isSafeUrl;

const escapeHtml = md.utils.escapeHtml;
const LINK_REL = "noopener noreferrer nofollow";

const linkOpen: RendererRule = (tokens, idx, options, _env, self) => {
  const token = tokens[idx];
  if (token === undefined) return "";
  const href = token.attrGet("href") ?? "";
  // Defense in depth: validateLink already refused these.
  if (!isSafeUrl(href)) token.attrSet("href", "#");
  token.attrSet("target", "_blank");
  token.attrSet("rel", LINK_REL);
  return self.renderToken(tokens, idx, options);
};

const image: RendererRule = (tokens, idx, options, env, self) => {
  const token = tokens[idx];
  if (token === undefined) return "";
  const src = token.attrGet("src") ?? "";
  const alt = self.renderInlineAsText(token.children ?? [], options, env);
  const label = escapeHtml(alt === "" ? src : alt);
  if (!isSafeUrl(src) || insideLink(tokens, idx)) return label;
  return (
    `<a href="${escapeHtml(src)}" target="_blank" rel="${LINK_REL}" class="md-image">` +
    `${label}</a>`
  );
};

/** Whether the inline token at `idx` is inside a link (a link in a link is not HTML). */
function insideLink(tokens: readonly { type: string }[], idx: number): boolean {
  let depth = 0;
  for (let i = 0; i < idx; i++) {
    const type = tokens[i]?.type;
    if (type === "link_open") depth++;
    else if (type === "link_close") depth--;
  }
  return depth > 0;
}

const escapeContent: RendererRule = (tokens, idx) => escapeHtml(tokens[idx]?.content ?? "");

md.renderer.rules.link_open = linkOpen;
md.renderer.rules.image = image;
md.renderer.rules.html_block = escapeContent;
md.renderer.rules.html_inline = escapeContent;

/**
 * Renders Markdown to an HTML string with no raw HTML, safe links only and no images loaded.
 * The result may be set as `innerHTML` (`dangerouslySetInnerHTML`).
 * @param source the agent's Markdown text.
 */
export function renderMarkdown(source: string): string {
  return md.render(source);
}
