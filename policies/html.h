// Text-to-HTML helpers shared by the printable renderings (report_render.h,
// certificate_render.h), so that every page escapes and restricts itself the same way.
#pragma once

#include <string>
#include <string_view>

namespace phivault::policies {

// Copies `in`, replacing every byte that does not start a well-formed UTF-8 sequence (RFC 3629:
// no overlongs, no surrogates, nothing above U+10FFFF) with U+FFFD.
std::string SanitizeUtf8(std::string_view in);

// `raw` as HTML text or attribute value: SanitizeUtf8, then & < > " ' as character references
// and control characters other than TAB, LF and CR as U+FFFD.
std::string HtmlEscape(std::string_view raw);

// The <meta> element every rendered page carries: no scripts, no external resources (only the
// page's inline style).
inline constexpr std::string_view kHtmlSecurityPolicyMeta =
    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
    "style-src 'unsafe-inline'\">\n";

}  // namespace phivault::policies
