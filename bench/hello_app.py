"""The bare FastAPI baseline: one `async def` route returning a small JSON object."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/hello")  # type: ignore[untyped-decorator]  # FastAPI is not installed here
async def hello() -> dict[str, str]:
    return {"status": "ok"}
