-- completions.lua — wrk script: POST /v1/completions with max_tokens 8
-- and count the answers by status (bench/wrk/status.lua).
--
--   wrk -t2 -c8 -d10s -s bench/wrk/completions.lua http://127.0.0.1:8080
-- Environment: QD_MODEL (default stories260K), QD_API_KEY (optional).

local model = os.getenv("QD_MODEL") or "stories260K"
wrk.path = "/v1/completions"
wrk.body = '{"model":"' .. model .. '","prompt":"Once upon a time",' ..
           '"max_tokens":8}'
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "status.lua")
