// The page's only way to the store: GET /api/... returning JSON, with the store's error envelope
// ({"error": {"code", "message"}, "trace_id"}) turned into an ApiError a view can show.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** GET /api/<path> with the given query parameters (empty values are left out). */
export async function getJson(path, params = {}, { signal } = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "") continue;
    query.append(key, String(value));
  }
  const url = `/api/${path}${query.toString() ? `?${query}` : ""}`;
  let response;
  try {
    response = await fetch(url, { headers: { accept: "application/json" }, signal });
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw new ApiError(0, "unreachable", "the telemetry store did not answer (is it still running?)");
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const error = body && body.error ? body.error : {};
    throw new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || `the store answered ${response.status}`,
    );
  }
  return body;
}
