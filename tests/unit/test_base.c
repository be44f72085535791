/* test_base.c: status names and error text. */
#include "base/err.h"
#include "test.h"

int main(void)
{
    struct lg_err err;
    lg_err_clear(&err);
    CHECK_EQ_INT(err.code, LG_OK);
    CHECK_EQ_STR(err.msg, "");
    enum lg_status s = lg_err_set(&err, LG_ERR_FORMAT, "tensor %s: %u dims", "x", 7u);
    CHECK_EQ_INT(s, LG_ERR_FORMAT);
    CHECK_EQ_INT(err.code, LG_ERR_FORMAT);
    CHECK_EQ_STR(err.msg, "tensor x: 7 dims");
    CHECK_EQ_INT(lg_err_set(NULL, LG_ERR_IO, "ignored"), LG_ERR_IO);
    CHECK_EQ_STR(lg_status_str(LG_ERR_NOT_FOUND), "not found");
    CHECK_EQ_STR(lg_status_str((enum lg_status)999), "unknown status");
    return lg_test_done("test_base");
}
