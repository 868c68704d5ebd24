-- A JSON login per request (the storm); the credentials come from the environment.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format('{"email": "%s", "password": "%s"}',
  os.getenv("BENCH_LOGIN_EMAIL"), os.getenv("BENCH_LOGIN_PASSWORD"))

dofile(os.getenv("BENCH_REPORT_LUA"))
