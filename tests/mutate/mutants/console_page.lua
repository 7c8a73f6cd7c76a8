-- Mutants of the console's page (dev/scripts/fotahost/mcs_cloud/console/):
-- what only a browser sees, killed by spec/console_browser_spec.lua in
-- Debian's chromium. A filter names only a test that needs no earlier one.
local SPEC = { "spec/console_browser_spec.lua" }
local DIR = "dev/scripts/fotahost/mcs_cloud/console/"
local JS, CSS = DIR .. "console.js", DIR .. "console.css"

return {
  { name = "console-page-status-as-markup", file = JS,
    from = [[setText($("td.status", tr), st ? st.text : "");]],
    to = [[$("td.status", tr).innerHTML = st ? st.text : "";]],
    specs = SPEC, filter = "shows what a device sends as text",
    why = "a device's status is parsed as markup in the admin's page: <img onerror> runs wherever the "
      .. "CSP's trusted types are not enforced" },
  { name = "console-page-token-in-local-storage", file = JS,
    from = "sessionStorage.setItem(TOKEN_KEY, token);",
    to = "localStorage.setItem(TOKEN_KEY, token);",
    specs = SPEC, filter = "asks for the admin token",
    why = "the admin token outlives the tab: whoever uses the browser later drives the cloud" },
  { name = "console-page-fragment-token-kept", file = JS,
    from = [[history.replaceState(null, "", location.pathname + location.search);]],
    to = "",
    specs = SPEC, filter = "asks for the admin token",
    why = "a #token= link leaves the token in the address bar and the history, for a shared screen "
      .. "or a synced history to leak" },
  { name = "console-page-no-focus-outline", file = CSS,
    from = "  outline: 3px solid var(--focus);\n",
    to = "  outline: none;\n",
    specs = SPEC,
    why = "a keyboard user cannot see which button Enter will press (Push included)" },
  { name = "console-page-tables-widen-the-page", file = CSS,
    from = ".scroll { overflow-x: auto; ",
    to = ".scroll { ",
    specs = SPEC, filter = "phone",
    why = "on a phone the tables push the page wider than the screen: the Push buttons end up off it" },
  { name = "console-page-busy-button-disabled", file = JS,
    from = [[    if (busy) button.setAttribute("aria-disabled", "true");
    else button.removeAttribute("aria-disabled");
]],
    to = "    button.disabled = busy;\n",
    specs = SPEC,
    why = "a button whose action runs is disabled: the keyboard focus falls to the page's top when Push "
      .. "is pressed" },
  { name = "console-page-push-twice", file = JS,
    from = "    if (state.pushing.has(id)) return; // one push at a time a device\n",
    to = "",
    specs = SPEC,
    why = "Enter pressed again while a push is under way sends the device a second push" },
  { name = "console-page-heartbeats-fill-the-feed", file = JS,
    from = "      if (!beat || showingHeartbeats()) shown.push(li);",
    to = "      shown.push(li);",
    specs = SPEC, filter = "flood of heartbeats",
    why = "a device's heartbeats fill the activity feed: a flood pushes every other line out of it" },
}
