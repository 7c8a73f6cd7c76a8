-- Mutants of the download path: libcurl's options (plugins/curl.c) and
-- fotahost.http (scripts/fotahost/http.lua).
return {
  { name = "curl-verifyhost-off", file = "plugins/curl.c",
    from = "SETOPT(CURLOPT_SSL_VERIFYHOST, insecure ? 0L : 2L);",
    to = "SETOPT(CURLOPT_SSL_VERIFYHOST, 0L);",
    specs = { "spec/http_spec.lua" },
    why = "a certificate for another host name is accepted" },
  { name = "http-empty-error-is-success", file = "scripts/fotahost/http.lua",
    from = [[if not info.error and (info.status < 200 or info.status > 299) then]],
    to = [[if false then]],
    specs = { "spec/http_spec.lua" },
    why = "an error status with no body counts as a finished download" },
}
