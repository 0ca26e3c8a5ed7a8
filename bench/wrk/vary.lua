-- wrk script for bench/scale.py: post.lua's request, varied per request.
-- BENCH_KEY_PREFIX + BENCH_KEY_COUNT: Authorization is a random one of
-- PREFIX0000000 .. PREFIX(COUNT-1) (zero-padded to 7 digits);
-- BENCH_MODEL_PREFIX + BENCH_MODEL_COUNT: the body's "@MODEL@" becomes a
-- random one of PREFIX0000 .. PREFIX(COUNT-1).
dofile(os.getenv("BENCH_WRK_DIR") .. "/post.lua")
local kp, kn = os.getenv("BENCH_KEY_PREFIX") or "", tonumber(os.getenv("BENCH_KEY_COUNT") or "0")
local mp, mn = os.getenv("BENCH_MODEL_PREFIX") or "", tonumber(os.getenv("BENCH_MODEL_COUNT") or "0")
local body = wrk.body
local threads = 0

setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

init = function(args)
  math.randomseed(os.time() * 1000 + (tid or 0))
end

request = function()
  local h = wrk.headers
  if kn > 0 then
    h["Authorization"] = string.format("Bearer %s%07d", kp, math.random(0, kn - 1))
  end
  local b = body
  if mn > 0 then
    b = string.gsub(body, "@MODEL@", string.format("%s%04d", mp, math.random(0, mn - 1)), 1)
  end
  return wrk.format(nil, nil, h, b)
end
