/* GET /openapi.json: the OpenAPI 3.1 document of every route, without a
 * token (like /healthz: it says what the API is, nothing of its data).
 *
 * Why the document is docs/openapi.json, checked in and compiled in:
 * - One source of truth, written as the document itself. Generating it from
 *   the route table would give paths and roles but not the shapes, which
 *   have to be written by hand anyway; a checked-in file is what reviewers
 *   read and what the npm validator and the tests load, byte for byte what
 *   rlhfd serves.
 * - Compiled in (make writes $(BUILD)/server/openapi_json.c from it with od,
 *   as the schema/ migrations are), so rlhfd serves it from any directory
 *   and a rebuilt binary can never serve a stale file.
 * - Held to the code by tests (build/run-tests openapi): every route of
 *   server/route_table.c is in it with its method and roles (x-roles) and
 *   nothing else is, the npm validator @readme/openapi-parser accepts it,
 *   and every JSON reply the api suites receive must match its schema
 *   (tests/lib/openapi_check.c), so a shape that drifts fails a test. */
#include "openapi.h"

#include "routes.h"

enum MHD_Result route_openapi(request *r) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        openapi_json_len, (void *)openapi_json, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    return http_queue(r, 200, resp);
}
