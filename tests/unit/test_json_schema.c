/* tests/lib/json_schema.c: each keyword accepts what it should and refuses
 * what it should, naming the place; $refs resolve; unknown keywords are
 * refused rather than ignored. */
#include <check.h>
#include <jansson.h>
#include <string.h>

#include "json_schema.h"
#include "suites.h"

/* The root every case's $refs point into. */
static const char *const root_text =
    "{\"components\":{\"schemas\":{"
    "\"Pet\":{\"type\":\"object\",\"required\":[\"name\"],\"additionalProperties\":false,"
    "\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":[\"integer\",\"null\"]},"
    "\"kind\":{\"type\":\"string\",\"enum\":[\"cat\",\"dog\"]}}},"
    "\"a/b~c\":{\"const\":1},"
    "\"Loop\":{\"$ref\":\"#/components/schemas/Loop\"}}}}";

/* Validates instance (JSON text) against schema (JSON text): 1 valid, 0
 * not; why receives the failure. */
static int check_text(const char *schema_text, const char *instance_text, char *why, size_t len) {
    json_t *root = json_loads(root_text, 0, NULL);
    json_t *schema = json_loads(schema_text, JSON_DECODE_ANY, NULL);
    json_t *instance = json_loads(instance_text, JSON_DECODE_ANY, NULL);
    ck_assert_msg(root && schema && instance, "bad test JSON: %s / %s", schema_text, instance_text);
    const int ok = json_schema_validate(root, schema, instance, why, len);
    json_decref(root), json_decref(schema), json_decref(instance);
    return ok;
}

static void valid(const char *schema, const char *instance) {
    char why[512];
    ck_assert_msg(check_text(schema, instance, why, sizeof why), "%s refused by %s: %s", instance,
                  schema, why);
}

/* instance is refused, with want in the reason. */
static void invalid(const char *schema, const char *instance, const char *want) {
    char why[512];
    ck_assert_msg(!check_text(schema, instance, why, sizeof why), "%s accepted by %s", instance,
                  schema);
    ck_assert_msg(strstr(why, want) != NULL, "%s by %s: '%s' lacks '%s'", instance, schema, why,
                  want);
}

START_TEST(test_json_schema_type) {
    valid("{\"type\":\"integer\"}", "3");
    invalid("{\"type\":\"integer\"}", "3.5", "$: integer expected, got number");
    valid("{\"type\":\"number\"}", "3"); /* an integer is a number */
    valid("{\"type\":\"number\"}", "3.5");
    invalid("{\"type\":\"string\"}", "null", "got null");
    valid("{\"type\":\"boolean\"}", "false");
    valid("{\"type\":\"null\"}", "null");
    valid("{\"type\":\"array\"}", "[]");
    invalid("{\"type\":\"object\"}", "[]", "object expected, got array");
    valid("{\"type\":[\"string\",\"null\"]}", "null");
    valid("{\"type\":[\"string\",\"null\"]}", "\"x\"");
    invalid("{\"type\":[\"string\",\"null\"]}", "1", "one of [\"string\",\"null\"] expected");
    valid("true", "{\"anything\":1}");
}
END_TEST

START_TEST(test_json_schema_object) {
    const char *s = "{\"type\":\"object\",\"required\":[\"a\"],\"properties\":{\"a\":{\"type\":"
                    "\"integer\"},\"b\":{\"type\":\"string\"}},\"additionalProperties\":false}";
    valid(s, "{\"a\":1}");
    valid(s, "{\"a\":1,\"b\":\"x\"}");
    invalid(s, "{\"b\":\"x\"}", "$: \"a\" is missing");
    invalid(s, "{\"a\":1,\"c\":2}", "\"c\" is not in the schema");
    invalid(s, "{\"a\":\"1\"}", "$.a: integer expected, got string");
    /* additionalProperties as a schema; absent = anything */
    valid("{\"additionalProperties\":{\"type\":\"number\"}}", "{\"x\":1,\"y\":2.5}");
    invalid("{\"additionalProperties\":{\"type\":\"number\"}}", "{\"x\":\"1\"}",
            "$.x: number expected");
    valid("{\"properties\":{\"a\":{\"type\":\"integer\"}}}", "{\"z\":\"free\"}");
}
END_TEST

START_TEST(test_json_schema_array_enum_const_bounds) {
    const char *s = "{\"type\":\"array\",\"minItems\":1,\"maxItems\":2,\"items\":{\"type\":"
                    "\"integer\",\"minimum\":1,\"maximum\":9}}";
    valid(s, "[1,9]");
    invalid(s, "[]", "0 items, fewer than 1");
    invalid(s, "[1,2,3]", "3 items, more than 2");
    invalid(s, "[1,0]", "$[1]: 0 is below 1");
    invalid(s, "[10]", "$[0]: 10 is above 9");
    invalid(s, "[1,\"2\"]", "$[1]: integer expected");
    valid("{\"enum\":[\"a\",1,null]}", "null");
    invalid("{\"enum\":[\"a\",1]}", "\"b\"", "\"b\" is not one of the enum");
    valid("{\"const\":\"list\"}", "\"list\"");
    invalid("{\"const\":\"list\"}", "\"job\"", "not the const list");
    valid("{\"pattern\":\"^ftjob-[1-9][0-9]*$\"}", "\"ftjob-12\"");
    invalid("{\"pattern\":\"^ftjob-[1-9][0-9]*$\"}", "\"ftjob-0\"", "does not match");
    valid("{\"pattern\":\"^x$\"}", "3"); /* pattern applies to strings only */
}
END_TEST

START_TEST(test_json_schema_refs_and_combinators) {
    const char *pet = "{\"$ref\":\"#/components/schemas/Pet\"}";
    valid(pet, "{\"name\":\"Rex\",\"age\":null,\"kind\":\"dog\"}");
    invalid(pet, "{\"name\":\"Rex\",\"kind\":\"cow\"}", "$.kind: \"cow\" is not one of the enum");
    invalid("{\"type\":\"array\",\"items\":{\"$ref\":\"#/components/schemas/Pet\"}}",
            "[{\"name\":\"a\"},{\"name\":\"b\",\"owner\":1}]", "$[1]: \"owner\" is not in");
    valid("{\"$ref\":\"#/components/schemas/a~1b~0c\"}", "1"); /* ~1 is /, ~0 is ~ */
    invalid("{\"$ref\":\"#/components/schemas/Nope\"}", "1",
            "$ref #/components/schemas/Nope names nothing");
    invalid("{\"$ref\":\"#/components/schemas/Loop\"}", "1", "deeper than 64");
    const char *one = "{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}";
    valid(one, "1.5");
    invalid(one, "1", "matches 2 of oneOf's schemas");
    invalid(one, "\"x\"", "expected, got string");
    const char *any = "{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}";
    valid(any, "1");
    invalid(any, "true", "got boolean");
    const char *all = "{\"allOf\":[{\"type\":\"integer\"},{\"minimum\":5}]}";
    valid(all, "7");
    invalid(all, "3", "3 is below 5");
}
END_TEST

START_TEST(test_json_schema_unknown_keyword) {
    /* A keyword this validator does not implement is an error, not a pass. */
    invalid("{\"type\":\"string\",\"maxLength\":3}", "\"abcdef\"",
            "uses \"maxLength\", which this validator does not check");
    invalid("{\"properties\":{\"a\":{\"uniqueItems\":true}}}", "{\"a\":[1,1]}", "uniqueItems");
    /* annotations and x- extensions are fine */
    valid("{\"type\":\"string\",\"description\":\"d\",\"format\":\"date\",\"x-note\":1}", "\"s\"");
}
END_TEST

Suite *json_schema_suite(void) {
    Suite *s = suite_create("json_schema");
    TCase *tc = tcase_create("json_schema");
    tcase_add_test(tc, test_json_schema_type);
    tcase_add_test(tc, test_json_schema_object);
    tcase_add_test(tc, test_json_schema_array_enum_const_bounds);
    tcase_add_test(tc, test_json_schema_refs_and_combinators);
    tcase_add_test(tc, test_json_schema_unknown_keyword);
    suite_add_tcase(s, tc);
    return s;
}
