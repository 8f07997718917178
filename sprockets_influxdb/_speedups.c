/*
 * The compiled fast path of sprockets_influxdb.line_protocol.encode.
 *
 * It encodes the common point only: a dict of tags whose line prefix is
 * already in the encoder's prefix cache, a non-empty dict of fields whose
 * keys are all in the field key cache and whose values are exactly bool,
 * int (64-bit), finite float or ASCII str without a double quote or a
 * backslash, and a timestamp that is either an int of nanoseconds (a time
 * the library chose) or a float of seconds (a time the user gave: at n
 * when its repr() has no exponent, at s, ms or u within the range where
 * multiplying is exact), at a precision of n, u, ms or s.  For anything
 * else it returns None and
 * the Python encoder, which validates, escapes and fills the caches, does
 * the work: both give the same line, which the tests check on generated
 * points.
 *
 * The caches and limits are the Python module's own objects, handed over
 * once by configure().
 *
 * The module also holds the library's clock (now_ns), the compiled form of
 * sprockets_influxdb.clock.Clock.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <structmember.h>

#include <float.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define LINE_BUFFER 4096
/* How many steps past its own time a point may be moved to keep it apart
 * from the points of its series already written (line_protocol.MAX_STEPS). */
#define MAX_STEPS 4

/* The names the compiled RequestRecord uses, and its endpoint of requests
 * no route matched (configure_requests()). */
enum {
    NAME_CLIENT,
    NAME_PACKAGE,
    NAME_DEFAULT,
    NAME_OPEN_PLAIN,
    NAME_PUT,
    NAME_ADD,
    NAME_ADD_MEASUREMENT,
    NAME_WHOLE_TAGS,
    NAME_WHOLE,
    NAME_DURATION,
    NAME_CONTENT_LENGTH,
    NAME_SIGNALLED,
    NAME_FINISH_PY,
    NAME_REPORT_FAILURE,
    NAME_FAILURE,
    NAME_URL_RULE,
    NAME_RULES,
    NAME_CLOSE,
    NAME_START_PY,
    NAME_COMPLETE_PY,
    NAME_CLOSE_PY,
    NAME_COUNTING_WRITE,
    NAME_GONE,
    NAME_HEAD_METHOD,
    NAME_EXCLUDED,
    NAME_METHODS,
    NAME_DATABASE,
    NAME_MEASUREMENT,
    NAME_REQUEST_METHOD,
    NAME_GET,
    NAME_FILE_WRAPPER,
    NAME_CALL_PY,
    NAME_FILE_RESPONSE,
    NAME_START,
    NAME_TYPE,
    NAME_HTTP,
    NAME_PATH,
    NAME_METHOD_KEY,
    NAME_ROOT_PATH,
    NAME_APP,
    NAME_ROUTE,
    NAME_ENDPOINT_KEY,
    NAME_FASTAPI,
    NAME_ROUTE_CONTEXT,
    NAME_MORE_BODY,
    NAME_BODY,
    NAME_BODY_TYPE,
    NAME_START_TYPE,
    NAME_STATUS,
    NAME_SEND_PY,
    NAME_BEGIN_PY,
    NAME_ROUTES,
    NAME_OWNER,
    NAME_STATE,
    NAME_INFLUXDB,
    NAME_EMPTY,
    NAME_RULES_ATTR,
    NAME_GET_STATUS,
    NAME_APPLICATION,
    NAME_SETTINGS,
    NAME_DEFAULT_HANDLER,
    NAME_DEFAULT_ROUTER,
    NAME_FIXED,
    NAME_NAMES,
    NAME_ERROR_ATTR,
    NAME_GET_METHOD,
    NAME_CONTENT_LENGTH_HEADER,
    NAME_BEGUN,
    NAME_REQUEST,
    NAME_RECORDER,
    NAME_REQUEST_TIME,
    NAME_TIME,
    NAME_RECORD_ATTR,
    NAME_START_TIME,
    NAME_FINISH_TIME,
    NAME_DICT_ATTR,
    NAME_EXECUTE,
    NAME_ON_FINISH,
    NAME_INFLUXDB_FINISH,
    /* Configured (configure_requests(), configure_wsgi()). */
    NAME_UNMATCHED,
    NAME_UNKNOWN,
    NAME_ERROR_KEY,
    NAME_REQUEST_KEY,
    NAME_ENVIRON_KEY,
    NAME_OTHER_METHOD,
    NAME_RECORD_CLASS,
    NAME_MEASUREMENT_CLASS,
    NAME_RECORDING,
    NAME_ASGI_UNKNOWN,
    NAME_ASGI_RECORD_CLASS,
    NAME_ASGI_AWAITING,
    NAME_CLIENT_ADD,
    NAME_TORNADO_STATE,
    NAME_TORNADO_RECORD_CLASS,
    NAME_BEGIN_TORNADO_PY,
    NAME_MODULE_ADD,
    NAME_HEADERS_CLASS,
    NAME_COUNT
};

static const char *const RECORD_NAMES[NAME_COUNT] = {
    "_client",
    "_package",
    "_default",
    "_open_plain",
    "_put",
    "_add",
    "add_measurement",
    "_whole_tags",
    "_whole",
    "duration",
    "content_length",
    "_signalled",
    "_finish_py",
    "report_failure",
    "Could not record a request measurement",
    "url_rule",
    "_rules",
    "close",
    "_start_py",
    "_complete_py",
    "_close_py",
    "counting_write",
    "gone",
    "HEAD",
    "_excluded",
    "methods",
    "database",
    "measurement",
    "REQUEST_METHOD",
    "GET",
    "wsgi.file_wrapper",
    "_call_py",
    "_file_response",
    "start",
    "type",
    "http",
    "path",
    "method",
    "root_path",
    "app",
    "route",
    "endpoint",
    "fastapi",
    "effective_route_context",
    "more_body",
    "body",
    "http.response.body",
    "http.response.start",
    "status",
    "_send_py",
    "_begin_py",
    "_routes",
    "_owner",
    "state",
    "influxdb",
    "",
    "rules",
    "get_status",
    "application",
    "settings",
    "default_handler_class",
    "default_router",
    "fixed",
    "names",
    "_influxdb_error",
    "get",
    "Content-Length",
    "_influxdb_begun",
    "request",
    "recorder",
    "request_time",
    "_time",
    "_influxdb_record",
    "_start_time",
    "_finish_time",
    "_dict",
    "_execute",
    "on_finish",
    "_influxdb_finish",
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
};

/* The Python encoder's caches, per module object (so per interpreter). */
typedef struct {
    PyObject *prefix_cache;      /* (name, *keys, *values) -> head */
    PyObject *measurement_cache; /* name -> escaped name */
    PyObject *field_key_cache;   /* key -> escaped key */
    Py_ssize_t series_limit;
    /* The clock: the discriminator, the resolution (ns) and the last time
     * handed out. */
    long long clock_offset;
    long long clock_resolution;
    long long clock_last;
    /* The Measurement fast paths (configure_measurement): the tag pair
     * cache of line_protocol, the default client's base tags (NULL: not
     * known yet), the pure Python methods everything else is left to, and
     * the compiled base class. */
    PyObject *tag_pair_cache;
    PyObject *default_tags;
    PyObject *py_init;
    PyObject *py_set_tag;
    PyObject *py_set_field;
    PyObject *py_set_timestamp;
    PyObject *measurement_type;
    /* The compiled Buffer: time.monotonic and method names. */
    PyObject *monotonic;
    PyObject *str_acquire;
    PyObject *str_release;
    PyObject *str_extend;
    PyObject *str_popleft;
    PyObject *str_backlog;
    /* The compiled Buffer and RequestRecord. */
    PyObject *buffer_type;
    /* The lock of a compiled Buffer, which its put() takes directly. */
    PyObject *lock_type;
    /* The awaitable ASGIRecordBase.send returns for a response's start. */
    PyObject *sending_type;
    /* RecorderBase, whose fields the request paths read directly. */
    PyObject *recorder_type;
    PyObject *record_names[NAME_COUNT];
} State;

static State *
get_state(PyObject *module)
{
    return (State *)PyModule_GetState(module);
}

/* Python code runs while a point is encoded: the __hash__ and __eq__ of
 * tag values and of the keys of the caches and of ``last``, and the
 * finalizers that releasing an object or the cyclic garbage collector (at
 * any allocation) may run.  That code may change the caches, the tags,
 * the fields and ``last``, or raise.  So everything used across a call
 * that may run code is held by a strong reference, a dict iterated is
 * checked for changes, and an exception such code raises leaves the point
 * to the Python encoder, which raises it again or explains it; only a
 * MemoryError and what is not an Exception (KeyboardInterrupt,
 * SystemExit) go through. */

/* After an error while encoding a point: 1 (the error cleared) when the
 * point is left to the Python encoder, 0 when the error goes through. */
static int
leave_error_to_python(void)
{
    if (PyErr_ExceptionMatches(PyExc_Exception)
        && !PyErr_ExceptionMatches(PyExc_MemoryError)) {
        PyErr_Clear();
        return 1;
    }
    return 0;
}

/* cache[key] as a new reference; NULL on a miss (no exception) or an
 * error.  The cache is held during the lookup: the __eq__ of one of its
 * keys may run configure(), which releases it. */
static PyObject *
cache_get(PyObject *cache, PyObject *key)
{
    Py_INCREF(cache);
    PyObject *value = PyDict_GetItemWithError(cache, key);
    Py_XINCREF(value);
    Py_DECREF(cache);
    return value;
}

/* ------------------------------------------------------------------------
 * repr() of a float, quickly, for the common range.
 *
 * Python's repr() gives the shortest decimal string that reads back as the
 * same double and, among strings of that length, the one closest to it.
 * For 1e-6 < |x| < 2**52 (a request's duration in seconds among them;
 * below 1e-4 written with an exponent, as repr writes them), this finds
 * that string with exact 128-bit integer arithmetic: with
 * x = m * 2**e (m of 53 bits, e < 0) and a power of ten 10**p that puts
 * x * 10**p between 10**16 and 10**17, the doubles' rounding interval
 * around x, scaled by 10**p, holds the integers [lo, hi]; the shortest
 * strings are the multiples of the largest power of ten 10**t that has a
 * multiple in [lo, hi], the closest to x, a tie going to an even last
 * digit.  Everything else (zero, other magnitudes, a power-of-two
 * significand, whose interval is lopsided) is left to
 * PyOS_double_to_string, as repr() does it.
 * ------------------------------------------------------------------------
 */

/* Write the decimal digits of value to out (at least 20 bytes); return
 * their count.  What snprintf("%llu") writes, at a fraction of its cost:
 * the encoder writes four or five numbers a line. */
static int
put_digits(unsigned long long value, char *out)
{
    static const char PAIRS[201] = "00010203040506070809"
                                   "10111213141516171819"
                                   "20212223242526272829"
                                   "30313233343536373839"
                                   "40414243444546474849"
                                   "50515253545556575859"
                                   "60616263646566676869"
                                   "70717273747576777879"
                                   "80818283848586878889"
                                   "90919293949596979899";
    char reversed[20];
    int count = 0;
    /* Two digits a division. */
    while (value >= 100) {
        unsigned pair = (unsigned)(value % 100) * 2;
        value /= 100;
        reversed[count++] = PAIRS[pair + 1];
        reversed[count++] = PAIRS[pair];
    }
    if (value >= 10) {
        reversed[count++] = PAIRS[value * 2 + 1];
        reversed[count++] = PAIRS[value * 2];
    }
    else {
        reversed[count++] = (char)('0' + value);
    }
    for (int index = 0; index < count; index++) {
        out[index] = reversed[count - 1 - index];
    }
    return count;
}

/* The same for a signed value (at least 21 bytes). */
static int
put_signed(long long value, char *out)
{
    if (value < 0) {
        *out = '-';
        /* -(LLONG_MIN) overflows: negated as unsigned. */
        return 1 + put_digits(0ULL - (unsigned long long)value, out + 1);
    }
    return put_digits((unsigned long long)value, out);
}

#ifdef __SIZEOF_INT128__
typedef unsigned __int128 u128;

static const uint64_t POW10[20] = {
    1ULL,
    10ULL,
    100ULL,
    1000ULL,
    10000ULL,
    100000ULL,
    1000000ULL,
    10000000ULL,
    100000000ULL,
    1000000000ULL,
    10000000000ULL,
    100000000000ULL,
    1000000000000ULL,
    10000000000000ULL,
    100000000000000ULL,
    1000000000000000ULL,
    10000000000000000ULL,
    100000000000000000ULL,
    1000000000000000000ULL,
    10000000000000000000ULL,
};

static u128
pow10_128(int exponent)
{
    if (exponent < 20) {
        return POW10[exponent];
    }
    return (u128)POW10[19] * POW10[exponent - 19];
}

/* Write repr(x) to out (at least 32 bytes); return its length, or 0 when
 * x is outside the range handled here. */
static int
short_repr(double x, char *out)
{
    char *start = out;
    if (x < 0) {
        *out++ = '-';
        x = -x;
    }
    /* Above 1e-6 (whose double is just below 10**-6; 10**22 times it
     * fits the 128-bit arithmetic below, and a request's duration in
     * seconds is rarely smaller) and below 2**52. */
    if (!(x > 1e-6 && x < 4503599627370496.0)) {
        return 0;
    }
    uint64_t bits;
    memcpy(&bits, &x, sizeof(bits));
    uint64_t fraction = bits & ((1ULL << 52) - 1);
    int exponent = (int)((bits >> 52) & 0x7ff);
    if (fraction == 0) {
        return 0; /* a power of two: the interval below is narrower */
    }
    uint64_t m = fraction | (1ULL << 52);
    int shift = 1075 - exponent; /* x = m / 2**shift, shift in [1, 66] */
    /* floor(log10(x)) from the binary exponent (78913 / 2**18 is about
     * log10(2)), corrected below; floored by hand for negative values. */
    int binary = exponent - 1023;
    int decimal = binary >= 0 ? (binary * 78913) >> 18
                              : -((-binary * 78913 + 262143) >> 18);
    if (decimal < -6) {
        decimal = -6; /* x > 10**-6: an estimate below is one too low */
    }
    int power = 16 - decimal;
    u128 scale, value;
    for (int attempt = 0;; attempt++) {
        /* m < 2**53 and 10**22 < 2**74: (2m + 1) * scale fits. */
        if (power < 0 || power > 22 || attempt > 2) {
            return 0;
        }
        scale = pow10_128(power);
        value = ((u128)m * scale) >> shift;
        if (value < POW10[16]) {
            power++;
        }
        else if (value >= POW10[17]) {
            power--;
        }
        else {
            break;
        }
    }
    /* (m +- 1/2) * 10**power / 2**shift, over 2**(shift + 1). */
    if ((u128)(2 * m + 1) > (~(u128)0) / scale) {
        return 0;
    }
    int even = (m & 1) == 0;
    u128 mask = (((u128)1) << (shift + 1)) - 1;
    u128 low_numerator = (u128)(2 * m - 1) * scale;
    u128 high_numerator = (u128)(2 * m + 1) * scale;
    u128 middle_numerator = (u128)(2 * m) * scale;
    uint64_t lo = (uint64_t)(low_numerator >> (shift + 1));
    if ((low_numerator & mask) != 0 || !even) {
        lo += 1;
    }
    uint64_t hi = (uint64_t)(high_numerator >> (shift + 1));
    if ((high_numerator & mask) == 0 && !even) {
        hi -= 1;
    }
    /* The largest 10**t with a multiple in [lo, hi]. */
    int drop = 0;
    while (drop < 17) {
        uint64_t unit = POW10[drop + 1];
        uint64_t multiple = (lo + unit - 1) / unit * unit;
        if (multiple > hi) {
            break;
        }
        drop++;
    }
    uint64_t unit = POW10[drop];
    uint64_t below = (uint64_t)(middle_numerator >> (shift + 1)) / unit * unit;
    uint64_t above = below + unit;
    uint64_t chosen;
    int below_in = below >= lo, above_in = above <= hi;
    if (below_in && above_in) {
        u128 below_gap = middle_numerator - ((u128)below << (shift + 1));
        u128 above_gap = ((u128)above << (shift + 1)) - middle_numerator;
        if (below_gap == above_gap) {
            /* A tie, as repr() breaks it: to an even last digit. */
            chosen = (below / unit) % 2 == 0 ? below : above;
        }
        else {
            chosen = below_gap < above_gap ? below : above;
        }
    }
    else if (below_in) {
        chosen = below;
    }
    else if (above_in) {
        chosen = above;
    }
    else {
        return 0; /* cannot happen: the interval holds a multiple */
    }
    /* chosen * 10**-power, as digits and the position of the point. */
    char digits[24];
    int length = put_digits((unsigned long long)chosen, digits);
    int count = length;
    while (count > 1 && digits[count - 1] == '0') {
        count--;
    }
    int point = length - power; /* digits before the point */
    if (point > 16) {
        return 0; /* cannot happen below 2**52 */
    }
    if (point <= -4) {
        /* As repr() writes it: d[.ddd]e-XX, two exponent digits at
         * least. */
        *out++ = digits[0];
        if (count > 1) {
            *out++ = '.';
            memcpy(out, digits + 1, (size_t)(count - 1));
            out += count - 1;
        }
        int exponent = 1 - point; /* x = d.ddd * 10**-exponent */
        *out++ = 'e';
        *out++ = '-';
        if (exponent >= 100) {
            *out++ = (char)('0' + exponent / 100);
            exponent %= 100;
        }
        *out++ = (char)('0' + exponent / 10);
        *out++ = (char)('0' + exponent % 10);
    }
    else if (point <= 0) {
        *out++ = '0';
        *out++ = '.';
        for (int i = 0; i < -point; i++) {
            *out++ = '0';
        }
        memcpy(out, digits, (size_t)count);
        out += count;
    }
    else if (point >= count) {
        memcpy(out, digits, (size_t)count);
        out += count;
        for (int i = count; i < point; i++) {
            *out++ = '0';
        }
        *out++ = '.';
        *out++ = '0';
    }
    else {
        memcpy(out, digits, (size_t)point);
        out += point;
        *out++ = '.';
        memcpy(out, digits + point, (size_t)(count - point));
        out += count - point;
    }
    return (int)(out - start);
}

#else
/* No 128-bit integers on this compiler: repr() does all of it. */
static int
short_repr(double x, char *out)
{
    (void)x;
    (void)out;
    return 0;
}
#endif

static PyObject *
float_repr(PyObject *module, PyObject *value)
{
    char text[40];
    double real = PyFloat_AsDouble(value);
    if (real == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    int length = short_repr(real, text);
    if (length == 0) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromStringAndSize(text, length);
}

typedef struct {
    char *data;
    Py_ssize_t size;
} Line;

static int
put(Line *line, const char *text, Py_ssize_t length)
{
    if (line->size + length > LINE_BUFFER) {
        return -1;
    }
    memcpy(line->data + line->size, text, (size_t)length);
    line->size += length;
    return 0;
}

/* Append an exact ASCII str (a value from a cache: code a finalizer runs
 * may have put anything there); -1 when it is something else or does not
 * fit. */
static int
put_ascii(Line *line, PyObject *text)
{
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_ASCII(text)) {
        return -1;
    }
    return put(line, (const char *)PyUnicode_DATA(text),
               PyUnicode_GET_LENGTH(text));
}

/* The start of the line: the escaped name and tags, from the cache.
 * Returns a new reference, NULL with no exception on a miss. */
static PyObject *
find_head(State *state, PyObject *name, PyObject *tags)
{
    Py_ssize_t count = PyDict_GET_SIZE(tags);
    if (count == 0) {
        return cache_get(state->measurement_cache, name);
    }
    /* The same key as the Python encoder: (name, *keys, *values). */
    PyObject *key = PyTuple_New(1 + 2 * count);
    if (key == NULL) {
        return NULL;
    }
    Py_INCREF(name);
    PyTuple_SET_ITEM(key, 0, name);
    /* Allocating the key may have run the garbage collector, and its
     * finalizers may have changed the tags: the key is filled with the
     * tags it was sized for, or the point is left to Python. */
    Py_ssize_t position = 0, index = 0;
    PyObject *tag, *value;
    while (index < count && PyDict_Next(tags, &position, &tag, &value)) {
        Py_INCREF(tag);
        PyTuple_SET_ITEM(key, 1 + index, tag);
        Py_INCREF(value);
        PyTuple_SET_ITEM(key, 1 + count + index, value);
        index++;
    }
    PyObject *head = NULL;
    if (index == count && PyDict_GET_SIZE(tags) == count) {
        head = cache_get(state->prefix_cache, key);
    }
    /* Releasing the key may run the finalizer of a tag value it alone
     * holds now, which may empty the cache: the head is held already. */
    Py_DECREF(key);
    return head;
}

/* Append one field value; 1 when done, 0 to leave the point to Python,
 * -1 on an error.  Runs no Python code. */
static int
put_value(Line *line, PyObject *value)
{
    PyTypeObject *kind = Py_TYPE(value);
    if (kind == &PyFloat_Type) {
        double real = PyFloat_AS_DOUBLE(value);
        if (!isfinite(real)) {
            return 0;
        }
        /* What repr() gives: the shortest text that reads back. */
        char quick[40];
        int length = short_repr(real, quick);
        if (length > 0) {
            return put(line, quick, length) < 0 ? 0 : 1;
        }
        char *text =
            PyOS_double_to_string(real, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (text == NULL) {
            return -1;
        }
        int failed = put(line, text, (Py_ssize_t)strlen(text));
        PyMem_Free(text);
        return failed ? 0 : 1;
    }
    if (kind == &PyBool_Type) {
        return (value == Py_True ? put(line, "true", 4)
                                 : put(line, "false", 5))
                   ? 0
                   : 1;
    }
    if (kind == &PyLong_Type) {
        int overflow = 0;
        long long integer = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow) {
            return 0;
        }
        if (integer == -1 && PyErr_Occurred()) {
            return -1;
        }
        char number[32];
        int length = put_signed(integer, number);
        number[length++] = 'i';
        return put(line, number, length) < 0 ? 0 : 1;
    }
    if (kind == &PyUnicode_Type) {
        if (!PyUnicode_IS_ASCII(value)) {
            return 0;
        }
        const char *text = (const char *)PyUnicode_DATA(value);
        Py_ssize_t length = PyUnicode_GET_LENGTH(value);
        if (memchr(text, '"', (size_t)length) != NULL
            || memchr(text, '\\', (size_t)length) != NULL) {
            return 0;
        }
        return (put(line, "\"", 1) < 0 || put(line, text, length) < 0
                || put(line, "\"", 1) < 0)
                   ? 0
                   : 1;
    }
    return 0;
}

/* Append the fields; 1 when done, 0 to leave the point to Python, -1 on
 * an error. */
static int
put_fields(State *state, Line *line, PyObject *fields)
{
    Py_ssize_t count = PyDict_GET_SIZE(fields);
    Py_ssize_t position = 0;
    PyObject *key, *value;
    int status = 1;
    for (Py_ssize_t index = 0; status == 1 && index < count; index++) {
        if (!PyDict_Next(fields, &position, &key, &value)
            || !PyUnicode_CheckExact(key)) {
            return 0;
        }
        /* The lookup may run the __eq__ of a key of the cache, which may
         * change the fields: the value is held, and a change seen. */
        Py_INCREF(key);
        Py_INCREF(value);
        PyObject *escaped = cache_get(state->field_key_cache, key);
        if (escaped == NULL) {
            status = PyErr_Occurred() ? -1 : 0;
        }
        else if (PyDict_GET_SIZE(fields) != count
                 || (index > 0 && put(line, ",", 1) < 0)
                 || put_ascii(line, escaped) < 0 || put(line, "=", 1) < 0) {
            status = 0;
        }
        else {
            status = put_value(line, value);
        }
        Py_XDECREF(escaped);
        Py_DECREF(value);
        Py_DECREF(key);
    }
    return count == 0 ? 0 : status;
}

/* What a precision means here: floats of seconds are multiplied by scale
 * (0: not covered) below limit; ints of nanoseconds are divided by
 * divisor; step is the distance between two times of one process. */
typedef struct {
    double scale;
    double limit;
    long long divisor;
    long long step;
} Precision;

/* 1 and the precision's figures when this path covers it, else 0. */
static int
precision_of(PyObject *precision, Precision *result)
{
    if (!PyUnicode_Check(precision)) {
        return 0;
    }
    if (PyUnicode_CompareWithASCIIString(precision, "n") == 0) {
        *result = (Precision){0.0, 0.0, 1LL, 1000LL};
    }
    else if (PyUnicode_CompareWithASCIIString(precision, "ms") == 0) {
        *result = (Precision){1000.0, 9000000000.0, 1000000LL, 1LL};
    }
    else if (PyUnicode_CompareWithASCIIString(precision, "u") == 0) {
        *result = (Precision){1000000.0, 4294967296.0, 1000LL, 1LL};
    }
    else if (PyUnicode_CompareWithASCIIString(precision, "s") == 0) {
        *result = (Precision){1.0, 9e9, 1000000000LL, 1LL};
    }
    else {
        return 0;
    }
    return 1;
}

/* Seconds as nanoseconds, from the decimal digits of repr(seconds) as
 * exact_timestamp() takes them: 1 when done, 0 for what is left to Python
 * (a negative time, one repr() writes with an exponent, one beyond the
 * 64-bit range of nanoseconds). */
static int
nanoseconds_of(double seconds, long long *result)
{
    char text[40];
    if (!(seconds >= 0.0 && seconds < 9e9)) {
        return 0;
    }
    int length = short_repr(seconds, text);
    if (length == 0) {
        return 0;
    }
    long long value = 0;
    int index = 0, decimals = -1;
    for (; index < length; index++) {
        char c = text[index];
        if (c == '.') {
            decimals = 0;
            continue;
        }
        if (c < '0' || c > '9') {
            return 0;
        }
        if (decimals >= 9) {
            break; /* truncated below the nanosecond */
        }
        value = value * 10 + (c - '0');
        if (decimals >= 0) {
            decimals++;
        }
    }
    if (decimals < 0) {
        return 0; /* repr() always writes a point for these */
    }
    for (; decimals < 9; decimals++) {
        value *= 10;
    }
    *result = value;
    return 1;
}

/* The timestamp as an integer at the precision: an int of nanoseconds is
 * divided (truncated toward zero); a float of seconds is truncated on its
 * decimal digits, exactly as format_timestamp() does it.  Returns 2 for an
 * int (a time to keep apart from others), 1 for a float, 0 when the value
 * is not one this path covers (or -1 with an exception). */
static int
scale_timestamp(PyObject *timestamp, const Precision *precision,
                long long *result)
{
    if (PyLong_CheckExact(timestamp)) {
        int overflow = 0;
        long long nanoseconds =
            PyLong_AsLongLongAndOverflow(timestamp, &overflow);
        if (nanoseconds == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (overflow) {
            return 0;
        }
        *result = nanoseconds / precision->divisor;
        return 2;
    }
    if (!PyFloat_CheckExact(timestamp)) {
        return 0;
    }
    double seconds = PyFloat_AS_DOUBLE(timestamp);
    if (precision->scale == 0.0) {
        return nanoseconds_of(seconds, result);
    }
    double scale = precision->scale;
    if (!(seconds >= 0.0 && seconds < precision->limit)) {
        return 0;
    }
    long long value = (long long)(seconds * scale);
    if ((double)(value + 1) / scale <= seconds) {
        value += 1;
    }
    else if ((double)value / scale > seconds) {
        value -= 1;
    }
    *result = value;
    return 1;
}

/* Keep points of one series apart, as the Python encoder does with its
 * ``last`` argument: each series maps to a list [first, end], the last run
 * of times written, step apart.  A run is what the encoders write there,
 * a list of two ints; anything else under a series is replaced with a new
 * run, as if there were none. */

/* Whether run is one the encoders write: a list of two ints. */
static int
is_run(PyObject *run)
{
    return PyList_CheckExact(run) && PyList_GET_SIZE(run) == 2
           && PyLong_CheckExact(PyList_GET_ITEM(run, 0))
           && PyLong_CheckExact(PyList_GET_ITEM(run, 1));
}

/* run[index] = value, for a run is_run() accepted; -1 on an error. */
static int
set_time(PyObject *run, Py_ssize_t index, long long value)
{
    PyObject *number = PyLong_FromLongLong(value);
    if (number == NULL) {
        return -1;
    }
    /* Steals the new reference and releases the old item, an exact int:
     * no Python code runs. */
    return PyList_SetItem(run, index, number);
}

/* The time to write the point of the series head at, in *value: -1 on an
 * error, 0 to leave the point to Python (a run beyond 64 bits, or a point
 * that would move more than MAX_STEPS steps, which Python reports), 1
 * when done. */
static int
make_unique(State *state, PyObject *last, PyObject *head, long long *value,
            long long step)
{
    long long number = *value;
    PyObject *run = cache_get(last, head);
    if (run == NULL && PyErr_Occurred()) {
        return -1;
    }
    if (run != NULL && is_run(run)) {
        int status = 1, overflow_first = 0, overflow_end = 0;
        long long first = PyLong_AsLongLongAndOverflow(
            PyList_GET_ITEM(run, 0), &overflow_first);
        long long end = PyLong_AsLongLongAndOverflow(PyList_GET_ITEM(run, 1),
                                                     &overflow_end);
        if (overflow_first || overflow_end || end > LLONG_MAX - step) {
            status = 0; /* times beyond 64 bits: Python's integers do it */
        }
        else if (number > end) {
            if (set_time(run, 0, number) < 0 || set_time(run, 1, number) < 0) {
                status = -1;
            }
        }
        else if (number >= first) {
            /* Within the run: moved one step past its end, unless that is
             * too far from its own time (Python reports it).
             * moved - number > MAX_STEPS * step, without overflow: end >=
             * number, and a run may span the whole 64-bit range. */
            if ((unsigned long long)end - (unsigned long long)number
                > (unsigned long long)((MAX_STEPS - 1) * step)) {
                status = 0;
            }
            else if (set_time(run, 1, end + step) < 0) {
                status = -1;
            }
            else {
                *value = end + step;
            }
        }
        Py_DECREF(run);
        return status;
    }
    if (run == NULL && PyDict_GET_SIZE(last) >= state->series_limit) {
        PyDict_Clear(last);
    }
    /* Still held by last, if anything is: released with no code run. */
    Py_XDECREF(run);
    PyObject *fresh = Py_BuildValue("[LL]", number, number);
    if (fresh == NULL) {
        return -1;
    }
    /* Replacing a run releases it, which may run code (its finalizer):
     * nothing is borrowed here. */
    int failed = PyDict_SetItem(last, head, fresh);
    Py_DECREF(fresh);
    return failed ? -1 : 1;
}

/* The head (name and tags, encoded) of the last point of a slice, with
 * the name and tags it was made of, all held: the request metrics give
 * every request of a kind the same tags dict, never changed, so the next
 * point of a slice often has the very same ones. */
typedef struct {
    PyObject *name;
    PyObject *tags;
    PyObject *head;
} HeadHint;

static void
clear_hint(HeadHint *hint)
{
    Py_CLEAR(hint->name);
    Py_CLEAR(hint->tags);
    Py_CLEAR(hint->head);
}

/* Encode one point: a new str, Py_None (a new reference) for a point left
 * to Python, or NULL with an exception.  hint, when not NULL, is the head
 * of the previous point of the slice, and becomes this point's. */
static PyObject *
try_point(State *state, PyObject *name, PyObject *tags, PyObject *fields,
          PyObject *timestamp, const Precision *precision, PyObject *last,
          HeadHint *hint)
{
    if (state->prefix_cache == NULL) {
        Py_RETURN_NONE; /* not configured */
    }
    if (!PyUnicode_CheckExact(name) || !PyDict_CheckExact(tags)
        || !PyDict_CheckExact(fields)
        || (last != Py_None && !PyDict_CheckExact(last))) {
        Py_RETURN_NONE;
    }
    long long number;
    int kind = scale_timestamp(timestamp, precision, &number);
    if (kind < 0) {
        return NULL;
    }
    if (kind == 0) {
        Py_RETURN_NONE;
    }
    PyObject *head;
    if (hint != NULL && hint->head != NULL && hint->name == name
        && hint->tags == tags) {
        head = hint->head;
        Py_INCREF(head);
    }
    else {
        head = find_head(state, name, tags);
        if (head == NULL) {
            if (PyErr_Occurred()) {
                return NULL;
            }
            Py_RETURN_NONE;
        }
        if (hint != NULL) {
            /* The new references first: releasing the old ones may run
             * a finalizer. */
            HeadHint old = *hint;
            Py_INCREF(name);
            Py_INCREF(tags);
            Py_INCREF(head);
            hint->name = name;
            hint->tags = tags;
            hint->head = head;
            clear_hint(&old);
        }
    }
    char buffer[LINE_BUFFER];
    Line line = {buffer, 0};
    int status = put_ascii(&line, head) < 0 || put(&line, " ", 1) < 0
                     ? 0
                     : put_fields(state, &line, fields);
    /* Room for the time first: once ``last`` is updated, the point must
     * not be left to Python, which would move it a second time. */
    if (status == 1 && line.size + 22 > LINE_BUFFER) {
        status = 0;
    }
    /* Only the times the library chose (ints) are kept apart. */
    if (status == 1 && kind == 2 && last != Py_None) {
        status = make_unique(state, last, head, &number, precision->step);
    }
    Py_DECREF(head);
    if (status < 0) {
        return NULL;
    }
    char digits[32];
    digits[0] = ' ';
    int length = 1 + put_signed(number, digits + 1);
    if (status == 0 || put(&line, digits, length) < 0) {
        Py_RETURN_NONE;
    }
    PyObject *result = PyUnicode_New(line.size, 127);
    if (result == NULL) {
        return NULL;
    }
    memcpy(PyUnicode_DATA(result), line.data, (size_t)line.size);
    return result;
}

/* try_point(), with the errors that the point's own objects raise left
 * to Python (see leave_error_to_python()).  ``last`` is only changed once
 * nothing but a MemoryError can happen. */
static PyObject *
encode_point(State *state, PyObject *name, PyObject *tags, PyObject *fields,
             PyObject *timestamp, const Precision *precision, PyObject *last,
             HeadHint *hint)
{
    PyObject *line = try_point(state, name, tags, fields, timestamp,
                               precision, last, hint);
    if (line == NULL && leave_error_to_python()) {
        Py_RETURN_NONE;
    }
    return line;
}

static PyObject *
encode(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "encode() takes 6 arguments");
        return NULL;
    }
    Precision precision;
    if (!precision_of(args[4], &precision)) {
        Py_RETURN_NONE; /* not a precision for here */
    }
    return encode_point(get_state(module), args[0], args[1], args[2],
                        args[3], &precision, args[5], NULL);
}

/* encode_slice(values, start, stop, precision, base_tags, outputs) -> int
 *
 * Encode the buffer entries held flat in the list values (six values each:
 * sequence, database, name, tags, fields, timestamp) from index start to
 * stop, appending each sequence and line to the lists outputs[database]
 * = [sequences, lines, last].  Stops at the first entry it leaves to
 * Python (a database not in outputs, a point the fast path does not
 * cover, one whose objects raised an exception) and returns its index;
 * returns stop when all are done.  Raises only a MemoryError, what is
 * not an Exception, or a TypeError for arguments of the wrong types; then
 * nothing of the entry it was at is in the outputs. */
static PyObject *
encode_slice(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "encode_slice() takes 6 arguments");
        return NULL;
    }
    PyObject *values = args[0], *base_tags = args[4], *outputs = args[5];
    if (!PyList_CheckExact(values) || !PyDict_CheckExact(outputs)
        || (base_tags != Py_None && !PyDict_CheckExact(base_tags))) {
        PyErr_SetString(PyExc_TypeError,
                        "encode_slice() needs a list, a dict or None and a "
                        "dict");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    Py_ssize_t stop = PyLong_AsSsize_t(args[2]);
    if ((start == -1 || stop == -1) && PyErr_Occurred()) {
        return NULL;
    }
    if (start < 0 || start % 6 != 0 || stop < start) {
        PyErr_SetString(PyExc_ValueError,
                        "encode_slice() needs 0 <= start <= stop, start a "
                        "multiple of 6");
        return NULL;
    }
    Precision precision;
    if (!precision_of(args[3], &precision)) {
        return PyLong_FromSsize_t(start);
    }
    State *state = get_state(module);
    int merge = base_tags != Py_None && PyDict_GET_SIZE(base_tags) > 0;
    /* Strong references: Python code (the hash of a tag value, a
     * finalizer) may run while a point is encoded. */
    PyObject *database = NULL, *sequences = NULL, *lines = NULL;
    PyObject *last = NULL, *entry[6];
    PyObject *result = NULL;
    HeadHint hint = {NULL, NULL, NULL};
    Py_ssize_t at = start;
    while (at + 6 <= stop && at + 6 <= PyList_GET_SIZE(values)) {
        for (int index = 0; index < 6; index++) {
            entry[index] = PyList_GET_ITEM(values, at + index);
            Py_INCREF(entry[index]);
        }
        int done = 0; /* 1: left to Python, -1: error */
        if (entry[1] != database) {
            PyObject *output = PyDict_GetItemWithError(outputs, entry[1]);
            if (output == NULL) {
                done = !PyErr_Occurred() || leave_error_to_python() ? 1 : -1;
            }
            else if (!PyList_CheckExact(output)
                     || PyList_GET_SIZE(output) != 3
                     || !PyList_CheckExact(PyList_GET_ITEM(output, 0))
                     || !PyList_CheckExact(PyList_GET_ITEM(output, 1))) {
                PyErr_SetString(PyExc_TypeError,
                                "outputs[database] must be [list, list, "
                                "last]");
                done = -1;
            }
            else {
                /* The output is borrowed from outputs, and releasing the
                 * previous database or lists may run a finalizer that
                 * empties outputs: it is held, and all four new
                 * references taken before the old ones are released. */
                PyObject *old[4] = {database, sequences, lines, last};
                Py_INCREF(output);
                database = entry[1];
                sequences = PyList_GET_ITEM(output, 0);
                lines = PyList_GET_ITEM(output, 1);
                last = PyList_GET_ITEM(output, 2);
                Py_INCREF(database);
                Py_INCREF(sequences);
                Py_INCREF(lines);
                Py_INCREF(last);
                for (int index = 0; index < 4; index++) {
                    Py_XDECREF(old[index]);
                }
                Py_DECREF(output);
            }
        }
        PyObject *tags = entry[3], *merged = NULL, *line = NULL;
        if (done == 0 && merge) {
            if (!PyDict_CheckExact(tags)) {
                done = 1;
            }
            else {
                merged = PyDict_Copy(base_tags);
                if (merged == NULL || PyDict_Update(merged, tags) < 0) {
                    done = leave_error_to_python() ? 1 : -1;
                }
                tags = merged;
            }
        }
        if (done == 0) {
            /* Merged tags are a new dict per point: no hint for them. */
            line = encode_point(state, entry[2], tags, entry[4], entry[5],
                                &precision, last, merged ? NULL : &hint);
            if (line == NULL) {
                done = -1;
            }
            else if (line == Py_None) {
                done = 1;
            }
            else if (PyList_Append(sequences, entry[0]) < 0) {
                done = -1;
            }
            else if (PyList_Append(lines, line) < 0) {
                /* Keep the two lists aligned: the caller counts what was
                 * done by the sequences. */
                Py_ssize_t size = PyList_GET_SIZE(sequences);
#if PY_VERSION_HEX >= 0x030C0000
                PyObject *error = PyErr_GetRaisedException();
                PyList_SetSlice(sequences, size - 1, size, NULL);
                PyErr_SetRaisedException(error);
#else
                PyObject *type, *value, *traceback;
                PyErr_Fetch(&type, &value, &traceback);
                PyList_SetSlice(sequences, size - 1, size, NULL);
                PyErr_Restore(type, value, traceback);
#endif
                done = -1;
            }
        }
        Py_XDECREF(line);
        Py_XDECREF(merged);
        for (int index = 0; index < 6; index++) {
            Py_DECREF(entry[index]);
        }
        if (done < 0) {
            goto finally;
        }
        if (done > 0) {
            break;
        }
        at += 6;
    }
    result = PyLong_FromSsize_t(at);
finally:
    clear_hint(&hint);
    Py_XDECREF(database);
    Py_XDECREF(sequences);
    Py_XDECREF(lines);
    Py_XDECREF(last);
    return result;
}

/* ------------------------------------------------------------------------
 * The library's clock: see sprockets_influxdb/clock.py, whose Clock this
 * does the same as, atomically under the GIL.
 * ------------------------------------------------------------------------
 */

#if defined(CLOCK_REALTIME)
/* Nanoseconds between two times of one process (clock.STEP). */
#define CLOCK_STEP 1000

/* *nanoseconds* rounded down to the nearest time ending in the process's
 * discriminator (clock.align). */
static long long
clock_floor(State *state, long long nanoseconds)
{
    long long remainder = (nanoseconds - state->clock_offset) % CLOCK_STEP;
    if (remainder < 0) {
        remainder += CLOCK_STEP;
    }
    return nanoseconds - remainder;
}

/* The clock's next time, in nanoseconds: 0, or -1 with an error set. */
static int
clock_moment(State *state, long long *result)
{
    const long long step = CLOCK_STEP;
    long long resolution = state->clock_resolution;
    long long last = state->clock_last;
    long long moment;
    for (;;) {
        struct timespec now;
        if (clock_gettime(CLOCK_REALTIME, &now) != 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        long long reading = (long long)now.tv_sec * 1000000000LL
                            + (long long)now.tv_nsec;
        moment = clock_floor(state, reading);
        if (moment > last) {
            break;
        }
        long long following = last + step;
        if (following <= reading + resolution - 1) {
            moment = following; /* within the tick of a coarse clock */
            break;
        }
        if (last - moment > resolution + step) {
            break; /* the system clock was set back */
        }
        /* The same microsecond as the last time: wait for the next. */
    }
    state->clock_last = moment;
    *result = moment;
    return 0;
}

static PyObject *
clock_now(State *state)
{
    long long moment;
    if (clock_moment(state, &moment) < 0) {
        return NULL;
    }
    return PyLong_FromLongLong(moment);
}

static PyObject *
now_ns(PyObject *module, PyObject *unused)
{
    (void)unused;
    return clock_now(get_state(module));
}

/* Take back a time clock_now returned, if it was the last one: the next
 * may be the same (its holder has given it up). */
static void
clock_take_back(State *state, long long moment)
{
    if (moment != 0 && moment == state->clock_last) {
        state->clock_last = moment - CLOCK_STEP;
    }
}

/* A time of the system clock in seconds, as time.time() gives it, as a
 * time of the clock's lattice: clock.arrival(seconds), which is
 * clock.align(int(seconds * 1e9)), rounded down to end in the process's
 * discriminator.  0 for anything else than a time after 1970 and before
 * 2262, and on a system clock coarser than a microsecond (the moments of
 * one tick would all be one time). */
static long long
clock_align_seconds(State *state, double seconds)
{
    double nanoseconds = seconds * 1e9;
    if (state->clock_resolution > CLOCK_STEP
        || !(nanoseconds >= CLOCK_STEP && nanoseconds < 9.2e18)) {
        return 0;
    }
    return clock_floor(state, (long long)nanoseconds);
}

static PyObject *
clock_give_back(PyObject *module, PyObject *argument)
{
    long long moment = PyLong_AsLongLong(argument);
    if (moment == -1 && PyErr_Occurred()) {
        return NULL;
    }
    clock_take_back(get_state(module), moment);
    Py_RETURN_NONE;
}

static PyObject *
configure_clock(PyObject *module, PyObject *args)
{
    long long offset, resolution;
    if (!PyArg_ParseTuple(args, "LL", &offset, &resolution)) {
        return NULL;
    }
    if (offset < 0 || offset >= 1000 || resolution < 1) {
        PyErr_SetString(PyExc_ValueError,
                        "configure_clock() needs 0 <= offset < 1000 and "
                        "resolution >= 1");
        return NULL;
    }
    State *state = get_state(module);
    state->clock_offset = offset;
    state->clock_resolution = resolution;
    state->clock_last = 0;
    Py_RETURN_NONE;
}
#endif

#if defined(CLOCK_REALTIME)
/* ------------------------------------------------------------------------
 * The compiled base of sprockets_influxdb.measurement.Measurement.
 *
 * Its __init__, set_tag, set_field and set_timestamp do what the pure
 * Python methods do, for the common case only: exact str names and values
 * the caches already know (validated before), a float, an int of 64 bits,
 * a bool or an ASCII str as a field value, a finite float as a time.
 * Everything else goes to the pure Python method (configure_measurement),
 * which validates, raises the same errors and fills the caches.
 *
 * What add_measurement queues of it (_snapshot) are copies of its tags
 * and fields, so that later changes, through the measurement or through a
 * dictionary taken from it before, are never seen by what was queued.
 * ------------------------------------------------------------------------
 */

static struct PyModuleDef module_definition;

typedef struct {
    PyObject_HEAD
    PyObject *database;
    PyObject *name;
    PyObject *tags;
    PyObject *fields;
    PyObject *time;
    /* A new measurement shares the base tags (tags is then the state's
     * default_tags dict, never changed in place) and has no fields dict
     * yet (fields NULL): made on first use, the copy of the tags when they
     * are read or set, the dict of fields when it is.  A request recorded
     * without a tag or field of its own never makes either. */
    char tags_shared;
    char fields_lazy;
    /* Queued without a copy (add_measurement), the fields dict is shared
     * with the buffer as the tags may be: copied before any change.  A
     * dict handed to Python code (the tags and fields attributes) is
     * exposed: whoever holds it may change it, so it is copied when
     * queued. */
    char fields_shared;
    char tags_exposed;
    char fields_exposed;
    /* The clock's time this measurement was given, while nothing has read
     * it (0: none, or read): when the time is replaced and no later one
     * was taken, the clock takes it back (give_back). */
    long long lent;
} MeasurementObject;

/* Give the clock back the time the measurement was lent, if nothing read
 * it and it is still the last the clock handed out: the next measurement
 * may then have it.  Times stay unique: every other time handed out is
 * earlier, and nobody holds this one. */
static void
give_back(State *state, MeasurementObject *self)
{
    clock_take_back(state, self->lent);
    self->lent = 0;
}

/* The measurement's own tags dict, copied from the shared base tags if
 * not yet: 0, or -1 on an error. */
static int
own_tags(MeasurementObject *self)
{
    if (self->tags_shared) {
        PyObject *copy = PyDict_Copy(self->tags);
        if (copy == NULL) {
            return -1;
        }
        Py_SETREF(self->tags, copy);
        self->tags_shared = 0;
        self->tags_exposed = 0;
    }
    return 0;
}

/* The measurement's own fields dict, made if not yet: 0, or -1. */
static int
own_fields(MeasurementObject *self)
{
    if (self->fields_lazy) {
        PyObject *fields = PyDict_New();
        if (fields == NULL) {
            return -1;
        }
        Py_XSETREF(self->fields, fields);
        self->fields_lazy = 0;
        self->fields_exposed = 0;
    }
    else if (self->fields_shared) {
        PyObject *copy = PyDict_Copy(self->fields);
        if (copy == NULL) {
            return -1;
        }
        Py_SETREF(self->fields, copy);
        self->fields_shared = 0;
        self->fields_exposed = 0;
    }
    return 0;
}

/* The tags and the fields to queue (new references, or NULL with an
 * error): the measurement's own dicts when no Python code was handed them,
 * shared from then on with what was queued (so copied before any change
 * through the measurement), else copies. */
static PyObject *
copy_mapping(PyObject *mapping);

static PyObject *
queued_tags(MeasurementObject *self)
{
    PyObject *tags = self->tags;
    if (self->tags_shared
        || (!self->tags_exposed && tags != NULL && PyDict_CheckExact(tags))) {
        self->tags_shared = 1;
        Py_INCREF(tags);
        return tags;
    }
    return copy_mapping(tags);
}

static PyObject *
no_attribute(PyObject *op, const char *name);

static PyObject *
queued_fields(MeasurementObject *self)
{
    PyObject *fields = self->fields;
    if (fields == NULL) {
        /* Lazy: none yet (else deleted). */
        return self->fields_lazy ? PyDict_New()
                                 : no_attribute((PyObject *)self, "fields");
    }
    if (self->fields_shared
        || (!self->fields_exposed && PyDict_CheckExact(fields))) {
        self->fields_shared = 1;
        Py_INCREF(fields);
        return fields;
    }
    return copy_mapping(fields);
}

/* The module state of the compiled base among the classes of type. */
static State *
state_of_type(PyTypeObject *type)
{
    PyObject *mro = type->tp_mro;
    if (mro != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro); i++) {
            PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
            if (!(base->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
                continue;
            }
            PyObject *module = ((PyHeapTypeObject *)base)->ht_module;
            if (module != NULL
                && PyModule_GetDef(module) == &module_definition) {
                return get_state(module);
            }
        }
    }
    PyErr_SetString(PyExc_TypeError, "not a compiled Measurement");
    return NULL;
}

/* function(self, *args) with the arguments of a vectorcall. */
static PyObject *
call_python(PyObject *function, PyObject *self, PyObject *const *args,
            Py_ssize_t nargs, PyObject *kwnames)
{
    if (function == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "configure_measurement() was not called");
        return NULL;
    }
    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject *small[8];
    PyObject **stack = small;
    if (total + 1 > 8) {
        stack = PyMem_Malloc((size_t)(total + 1) * sizeof(PyObject *));
        if (stack == NULL) {
            return PyErr_NoMemory();
        }
    }
    stack[0] = self;
    for (Py_ssize_t i = 0; i < total; i++) {
        stack[i + 1] = args[i];
    }
    Py_INCREF(function);
    PyObject *result = PyObject_Vectorcall(function, stack, nargs + 1,
                                           kwnames);
    Py_DECREF(function);
    if (stack != small) {
        PyMem_Free(stack);
    }
    return result;
}

/* __init__(database, name) for the common case: a non-empty str database
 * and a str name met before (so valid), the default tags known.  1 when
 * done, 0 when not that case (nothing was done), -1 on an error. */
static int
measurement_fill(State *state, MeasurementObject *self, PyObject *database,
                 PyObject *name)
{
    if (state->default_tags == NULL || state->measurement_cache == NULL
        || !PyUnicode_CheckExact(database)
        || PyUnicode_GET_LENGTH(database) == 0
        || !PyUnicode_CheckExact(name)) {
        return 0;
    }
    int known = PyDict_Contains(state->measurement_cache, name);
    if (known <= 0) {
        return known;
    }
    PyObject *time = clock_now(state);
    if (time == NULL) {
        return -1;
    }
    /* Everything set before the old values are released: their
     * finalizers may use this measurement, or the clock. */
    PyObject *old[5] = {self->database, self->name, self->tags, self->fields,
                        self->time};
    Py_INCREF(database);
    self->database = database;
    Py_INCREF(name);
    self->name = name;
    /* Shared until used (see MeasurementObject). */
    Py_INCREF(state->default_tags);
    self->tags = state->default_tags;
    self->tags_shared = 1;
    self->tags_exposed = 0;
    self->fields = NULL;
    self->fields_lazy = 1;
    self->fields_shared = 0;
    self->fields_exposed = 0;
    self->time = time;
    self->lent = state->clock_last;
    for (int i = 0; i < 5; i++) {
        Py_XDECREF(old[i]);
    }
    return 1;
}

static int
measurement_init(PyObject *op, PyObject *args, PyObject *kwargs)
{
    State *state = state_of_type(Py_TYPE(op));
    if (state == NULL) {
        return -1;
    }
    if ((kwargs == NULL || PyDict_GET_SIZE(kwargs) == 0)
        && PyTuple_GET_SIZE(args) == 2) {
        int filled = measurement_fill(state, (MeasurementObject *)op,
                                      PyTuple_GET_ITEM(args, 0),
                                      PyTuple_GET_ITEM(args, 1));
        if (filled != 0) {
            return filled < 0 ? -1 : 0;
        }
    }
    /* The pure Python __init__, with the same arguments. */
    PyObject *function = state->py_init;
    if (function == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "configure_measurement() was not called");
        return -1;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(args);
    PyObject *full = PyTuple_New(count + 1);
    if (full == NULL) {
        return -1;
    }
    Py_INCREF(op);
    PyTuple_SET_ITEM(full, 0, op);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyTuple_GET_ITEM(args, i);
        Py_INCREF(item);
        PyTuple_SET_ITEM(full, i + 1, item);
    }
    Py_INCREF(function);
    PyObject *result = PyObject_Call(function, full, kwargs);
    Py_DECREF(function);
    Py_DECREF(full);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* A new measurement of the class configure_requests() was given, as
 * Measurement(database, name) makes it: directly, without packing the
 * arguments, when that class has the compiled __new__ and __init__ and an
 * ordinary metaclass. */
static PyObject *
new_measurement(State *state, PyObject *database, PyObject *name)
{
    PyObject *cls = state->record_names[NAME_MEASUREMENT_CLASS];
    PyTypeObject *type = (PyTypeObject *)cls;
    if (Py_IS_TYPE(cls, &PyType_Type) && type->tp_new == PyType_GenericNew
        && type->tp_init == measurement_init) {
        PyObject *made = type->tp_alloc(type, 0);
        if (made == NULL) {
            return NULL;
        }
        int filled = measurement_fill(state, (MeasurementObject *)made,
                                      database, name);
        if (filled > 0) {
            return made;
        }
        Py_DECREF(made);
        if (filled < 0) {
            return NULL;
        }
    }
    PyObject *names[2] = {database, name};
    return PyObject_Vectorcall(cls, names, 2, NULL);
}

static PyObject *
measurement_set_tag(PyObject *op, PyTypeObject *cls, PyObject *const *args,
                    Py_ssize_t nargs, PyObject *kwnames)
{
    MeasurementObject *self = (MeasurementObject *)op;
    State *state = PyType_GetModuleState(cls);
    if (state == NULL) {
        return NULL;
    }
    if (nargs == 2 && kwnames == NULL && state->tag_pair_cache != NULL
        && self->tags != NULL && PyDict_CheckExact(self->tags)
        && PyUnicode_CheckExact(args[0]) && PyUnicode_CheckExact(args[1])) {
        PyObject *pair = PyTuple_Pack(2, args[0], args[1]);
        if (pair == NULL) {
            return NULL;
        }
        int known = PyDict_Contains(state->tag_pair_cache, pair);
        Py_DECREF(pair);
        if (known < 0) {
            return NULL;
        }
        /* Its own dict (a copy of a shared one) right before the change:
         * what ran since (a collection's finalizers) may have queued it. */
        if (known) {
            if (own_tags(self) < 0) {
                return NULL;
            }
            if (self->tags != NULL && PyDict_CheckExact(self->tags)) {
                if (PyDict_SetItem(self->tags, args[0], args[1]) < 0) {
                    return NULL;
                }
                Py_RETURN_NONE;
            }
        }
    }
    return call_python(state->py_set_tag, op, args, nargs, kwnames);
}

static PyObject *
measurement_set_field(PyObject *op, PyTypeObject *cls,
                      PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames)
{
    MeasurementObject *self = (MeasurementObject *)op;
    State *state = PyType_GetModuleState(cls);
    if (state == NULL) {
        return NULL;
    }
    if (own_fields(self) < 0) {
        return NULL;
    }
    if (nargs == 2 && kwnames == NULL && state->field_key_cache != NULL
        && self->fields != NULL && PyDict_CheckExact(self->fields)
        && PyUnicode_CheckExact(args[0])) {
        PyObject *value = args[1];
        int plain = 0;
        if (PyFloat_CheckExact(value)) {
            double number = PyFloat_AS_DOUBLE(value);
            plain = number >= -DBL_MAX && number <= DBL_MAX;
        }
        else if (PyLong_CheckExact(value)) {
            int overflow = 0;
            long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
            if (number == -1 && PyErr_Occurred()) {
                return NULL;
            }
            plain = !overflow;
        }
        else if (PyUnicode_CheckExact(value)) {
            plain = PyUnicode_IS_ASCII(value);
        }
        else if (PyBool_Check(value)) {
            plain = 1;
        }
        if (plain) {
            int known = PyDict_Contains(state->field_key_cache, args[0]);
            if (known < 0) {
                return NULL;
            }
            if (known) {
                if (PyDict_SetItem(self->fields, args[0], value) < 0) {
                    return NULL;
                }
                Py_RETURN_NONE;
            }
        }
    }
    return call_python(state->py_set_field, op, args, nargs, kwnames);
}

static PyObject *
measurement_set_timestamp(PyObject *op, PyTypeObject *cls,
                          PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames)
{
    MeasurementObject *self = (MeasurementObject *)op;
    State *state = PyType_GetModuleState(cls);
    if (state == NULL) {
        return NULL;
    }
    if (nargs == 1 && kwnames == NULL && PyFloat_CheckExact(args[0])
        && isfinite(PyFloat_AS_DOUBLE(args[0]))) {
        give_back(state, self);
        Py_INCREF(args[0]);
        Py_XSETREF(self->time, args[0]);
        Py_RETURN_NONE;
    }
    /* It assigns _time (measurement_set_time) once the value is valid. */
    return call_python(state->py_set_timestamp, op, args, nargs, kwnames);
}

static PyObject *
no_attribute(PyObject *op, const char *name)
{
    PyErr_Format(PyExc_AttributeError, "'%.100s' object has no attribute '%s'",
                 Py_TYPE(op)->tp_name, name);
    return NULL;
}

/* A copy of a mapping: PyDict_Copy for a dict, else dict(mapping). */
static PyObject *
copy_mapping(PyObject *mapping)
{
    if (PyDict_CheckExact(mapping)) {
        return PyDict_Copy(mapping);
    }
    return PyObject_CallOneArg((PyObject *)&PyDict_Type, mapping);
}

/* (tags, fields) for a queued entry: copies. */
static PyObject *
measurement_snapshot(PyObject *op, PyObject *unused)
{
    (void)unused;
    MeasurementObject *self = (MeasurementObject *)op;
    if (self->tags == NULL) {
        return no_attribute(op, "tags");
    }
    if (self->fields == NULL && !self->fields_lazy) {
        return no_attribute(op, "fields");
    }
    PyObject *tags = copy_mapping(self->tags);
    if (tags == NULL) {
        return NULL;
    }
    if (self->fields == NULL && !self->fields_lazy) {
        /* dict() of the tags ran code */
        Py_DECREF(tags);
        return no_attribute(op, "fields");
    }
    PyObject *fields = self->fields == NULL ? PyDict_New()
                                            : copy_mapping(self->fields);
    if (fields == NULL) {
        Py_DECREF(tags);
        return NULL;
    }
    PyObject *result = PyTuple_Pack(2, tags, fields);
    Py_DECREF(tags);
    Py_DECREF(fields);
    return result;
}

static int
measurement_traverse(PyObject *op, visitproc visit, void *arg)
{
    MeasurementObject *self = (MeasurementObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->database);
    Py_VISIT(self->name);
    Py_VISIT(self->tags);
    Py_VISIT(self->fields);
    Py_VISIT(self->time);
    return 0;
}

static int
measurement_clear(PyObject *op)
{
    MeasurementObject *self = (MeasurementObject *)op;
    Py_CLEAR(self->database);
    Py_CLEAR(self->name);
    Py_CLEAR(self->tags);
    Py_CLEAR(self->fields);
    Py_CLEAR(self->time);
    return 0;
}

static void
measurement_dealloc(PyObject *op)
{
    PyTypeObject *type = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    measurement_clear(op);
    type->tp_free(op);
    Py_DECREF(type);
}

#define METHOD_FLAGS (METH_METHOD | METH_FASTCALL | METH_KEYWORDS)

static PyMethodDef measurement_methods[] = {
    {"set_tag", (PyCFunction)(void (*)(void))measurement_set_tag,
     METHOD_FLAGS, NULL},
    {"set_field", (PyCFunction)(void (*)(void))measurement_set_field,
     METHOD_FLAGS, NULL},
    {"set_timestamp", (PyCFunction)(void (*)(void))measurement_set_timestamp,
     METHOD_FLAGS, NULL},
    {"_snapshot", measurement_snapshot, METH_NOARGS,
     "_snapshot($self, /)\n--\n\n"
     "(tags, fields) for a queued entry: copies."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef measurement_members[] = {
    {"database", T_OBJECT_EX, offsetof(MeasurementObject, database), 0,
     NULL},
    {"name", T_OBJECT_EX, offsetof(MeasurementObject, name), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyObject *
measurement_get_tags(PyObject *op, void *closure)
{
    (void)closure;
    MeasurementObject *self = (MeasurementObject *)op;
    if (own_tags(self) < 0) {
        return NULL;
    }
    if (self->tags == NULL) {
        return no_attribute(op, "tags");
    }
    self->tags_exposed = 1;
    Py_INCREF(self->tags);
    return self->tags;
}

static int
measurement_set_tags(PyObject *op, PyObject *value, void *closure)
{
    (void)closure;
    MeasurementObject *self = (MeasurementObject *)op;
    if (value == NULL && self->tags == NULL) {
        no_attribute(op, "tags");
        return -1;
    }
    self->tags_shared = 0;
    self->tags_exposed = 1;
    Py_XINCREF(value);
    Py_XSETREF(self->tags, value);
    return 0;
}

static PyObject *
measurement_get_fields(PyObject *op, void *closure)
{
    (void)closure;
    MeasurementObject *self = (MeasurementObject *)op;
    if (own_fields(self) < 0) {
        return NULL;
    }
    if (self->fields == NULL) {
        return no_attribute(op, "fields");
    }
    self->fields_exposed = 1;
    Py_INCREF(self->fields);
    return self->fields;
}

static int
measurement_set_fields(PyObject *op, PyObject *value, void *closure)
{
    (void)closure;
    MeasurementObject *self = (MeasurementObject *)op;
    if (value == NULL && self->fields == NULL && !self->fields_lazy) {
        no_attribute(op, "fields");
        return -1;
    }
    self->fields_lazy = 0;
    self->fields_shared = 0;
    self->fields_exposed = 1;
    Py_XINCREF(value);
    Py_XSETREF(self->fields, value);
    return 0;
}

/* _time: reading it ends the loan of a clock's time (anything may hold it
 * from then on); assigning it gives the time back (give_back). */
static PyObject *
measurement_get_time(PyObject *op, void *closure)
{
    (void)closure;
    MeasurementObject *self = (MeasurementObject *)op;
    if (self->time == NULL) {
        return no_attribute(op, "_time");
    }
    self->lent = 0;
    Py_INCREF(self->time);
    return self->time;
}

static int
measurement_set_time(PyObject *op, PyObject *value, void *closure)
{
    (void)closure;
    MeasurementObject *self = (MeasurementObject *)op;
    if (value == NULL && self->time == NULL) {
        no_attribute(op, "_time");
        return -1;
    }
    if (self->lent != 0 && value != NULL && PyLong_CheckExact(value)) {
        /* The very time it was lent (a time given as unique that rounds
         * to it): it keeps it, and the clock must not hand it out. */
        int overflow = 0;
        long long given = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (given == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (!overflow && given == self->lent) {
            self->lent = 0;
        }
    }
    if (self->lent != 0) {
        State *state = state_of_type(Py_TYPE(op));
        if (state == NULL) {
            return -1;
        }
        give_back(state, self);
    }
    Py_XINCREF(value);
    Py_XSETREF(self->time, value);
    return 0;
}

static PyGetSetDef measurement_getset[] = {
    {"_time", measurement_get_time, measurement_set_time, NULL, NULL},
    {"tags", measurement_get_tags, measurement_set_tags, NULL, NULL},
    {"fields", measurement_get_fields, measurement_set_fields, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot measurement_slots[] = {
    {Py_tp_doc, "MeasurementBase(database, name)\n--\n\n"
                "The compiled base of Measurement."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, measurement_init},
    {Py_tp_dealloc, measurement_dealloc},
    {Py_tp_traverse, measurement_traverse},
    {Py_tp_clear, measurement_clear},
    {Py_tp_methods, measurement_methods},
    {Py_tp_members, measurement_members},
    {Py_tp_getset, measurement_getset},
    {0, NULL},
};

static PyType_Spec measurement_spec = {
    "sprockets_influxdb._speedups.MeasurementBase",
    sizeof(MeasurementObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    measurement_slots,
};

/* ------------------------------------------------------------------------
 * The compiled base of sprockets_influxdb.buffer.Buffer: its state as
 * attributes that the Python methods use as they are, and put() and
 * add(), what add_measurement costs the application, in C.  The same
 * steps as the pure Python Buffer.put, under the same lock.
 * ------------------------------------------------------------------------
 */

#define ENTRY_SIZE 6

typedef struct {
    PyObject_HEAD
    PyObject *lock;
    PyObject *items;
    PyObject *elsewhere;
    PyObject *since;
    Py_ssize_t max_size;
    Py_ssize_t trigger_size;
    Py_ssize_t max_slots;
    Py_ssize_t trigger_slots;
    Py_ssize_t sequence;
    Py_ssize_t overflowed;
    char over;
} BufferObject;

/* ------------------------------------------------------------------------
 * BufferLock: the lock of a compiled Buffer.  A plain mutual exclusion
 * lock, as threading.Lock, that Python code holds with ``with`` (or
 * acquire() and release()) and the compiled put() takes and gives back
 * without a method call: a threading.Lock's acquire() is called with its
 * arguments parsed each time, which cost more than the rest of put().
 * ------------------------------------------------------------------------
 */

typedef struct {
    PyObject_HEAD
    PyThread_type_lock lock;
    char locked;
} BufferLockObject;

/* Take the lock: 0, or -1 with the exception a signal handler raised
 * while waiting.  Another thread holding it is waited for with the
 * interpreter lock released (that thread may need the interpreter to
 * release it), and, as threading.Lock does, the signal handlers run
 * while waiting: a Ctrl-C ends a wait that would never end. */
static int
buffer_lock_take(BufferLockObject *self)
{
    if (!PyThread_acquire_lock(self->lock, NOWAIT_LOCK)) {
        PyLockStatus status;
        do {
            Py_BEGIN_ALLOW_THREADS
            status = PyThread_acquire_lock_timed(self->lock, -1, 1);
            Py_END_ALLOW_THREADS
            if (status == PY_LOCK_INTR && Py_MakePendingCalls() < 0) {
                return -1;
            }
        } while (status != PY_LOCK_ACQUIRED);
    }
    self->locked = 1;
    return 0;
}

static void
buffer_lock_give(BufferLockObject *self)
{
    self->locked = 0;
    PyThread_release_lock(self->lock);
}

static PyObject *
buffer_lock_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0
        || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "BufferLock() takes no arguments");
        return NULL;
    }
    BufferLockObject *self = (BufferLockObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->lock = PyThread_allocate_lock();
    self->locked = 0;
    if (self->lock == NULL) {
        Py_DECREF(self);
        PyErr_SetString(PyExc_MemoryError, "cannot allocate a lock");
        return NULL;
    }
    return (PyObject *)self;
}

static void
buffer_lock_dealloc(PyObject *op)
{
    BufferLockObject *self = (BufferLockObject *)op;
    PyTypeObject *type = Py_TYPE(op);
    if (self->lock != NULL) {
        if (self->locked) {
            PyThread_release_lock(self->lock);
        }
        PyThread_free_lock(self->lock);
    }
    type->tp_free(op);
    Py_DECREF(type);
}

static PyObject *
buffer_lock_acquire(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    if (buffer_lock_take((BufferLockObject *)op) < 0) {
        return NULL;
    }
    Py_RETURN_TRUE;
}

static PyObject *
buffer_lock_release(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    BufferLockObject *self = (BufferLockObject *)op;
    if (!self->locked) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return NULL;
    }
    buffer_lock_give(self);
    Py_RETURN_NONE;
}

static PyObject *
buffer_lock_exit(PyObject *op, PyObject *const *Py_UNUSED(args),
                 Py_ssize_t Py_UNUSED(nargs))
{
    return buffer_lock_release(op, NULL);
}

static PyObject *
buffer_lock_locked(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(((BufferLockObject *)op)->locked);
}

static PyMethodDef buffer_lock_methods[] = {
    {"acquire", buffer_lock_acquire, METH_NOARGS,
     "acquire($self, /)\n--\n\n"
     "Take the lock, waiting as long as another thread holds it."},
    {"release", buffer_lock_release, METH_NOARGS,
     "release($self, /)\n--\n\n"
     "Give the lock back (RuntimeError when it is not held)."},
    {"locked", buffer_lock_locked, METH_NOARGS,
     "locked($self, /)\n--\n\nWhether the lock is held."},
    {"__enter__", buffer_lock_acquire, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))buffer_lock_exit,
     METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot buffer_lock_slots[] = {
    {Py_tp_doc, "The lock of a compiled Buffer."},
    {Py_tp_new, buffer_lock_new},
    {Py_tp_dealloc, buffer_lock_dealloc},
    {Py_tp_methods, buffer_lock_methods},
    {0, NULL},
};

static PyType_Spec buffer_lock_spec = {
    "sprockets_influxdb._speedups.BufferLock",
    sizeof(BufferLockObject),
    0,
    Py_TPFLAGS_DEFAULT,
    buffer_lock_slots,
};

static PyObject *
call_method0(PyObject *object, PyObject *name)
{
    PyObject *args[1] = {object};
    return PyObject_VectorcallMethod(
        name, args, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* The steps of Buffer.put, the lock held; *dropped receives the values of
 * an entry dropped, released by the caller once the lock is.  Returns the
 * signal, or -2 on an error. */
static int
buffer_put_locked(State *state, BufferObject *self, PyObject *database,
                  PyObject *name, PyObject *tags, PyObject *fields,
                  PyObject *time, PyObject **dropped)
{
    PyObject *items = self->items;
    if (items == NULL || self->lock == NULL) {
        PyErr_SetString(PyExc_AttributeError, "the buffer is not set up");
        return -2;
    }
    Py_INCREF(items);
    PyObject *number = PyLong_FromSsize_t(self->sequence + 1);
    if (number == NULL) {
        Py_DECREF(items);
        return -2;
    }
    PyObject *entry = PyTuple_Pack(ENTRY_SIZE, number, database, name, tags,
                                   fields, time);
    Py_DECREF(number);
    if (entry == NULL) {
        Py_DECREF(items);
        return -2;
    }
    PyObject *args[2] = {items, entry};
    PyObject *done = PyObject_VectorcallMethod(
        state->str_extend, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(entry);
    if (done == NULL) {
        Py_DECREF(items);
        return -2;
    }
    Py_DECREF(done);
    self->sequence += 1;
    int signal = 0;
    Py_ssize_t slots = PyObject_Size(items);
    if (slots < 0) {
        signal = -2;
    }
    else if (slots > self->max_slots) {
        for (int i = 0; i < ENTRY_SIZE; i++) {
            dropped[i] = call_method0(items, state->str_popleft);
            if (dropped[i] == NULL) {
                signal = -2;
                break;
            }
        }
        if (signal == 0) {
            self->overflowed += 1;
            signal = -1;
        }
    }
    else if (slots == ENTRY_SIZE) {
        PyObject *now = PyObject_CallNoArgs(state->monotonic);
        if (now == NULL) {
            signal = -2;
        }
        else {
            Py_XSETREF(self->since, now);
            signal = 1;
        }
    }
    else if (slots == self->trigger_slots) {
        signal = 2;
    }
    else if (self->elsewhere != NULL && self->elsewhere != Py_None
             && !self->over) {
        PyObject *backlog = PyObject_GetAttr(self->elsewhere,
                                             state->str_backlog);
        Py_ssize_t count = backlog ? PyLong_AsSsize_t(backlog) : -1;
        Py_XDECREF(backlog);
        if (count == -1 && PyErr_Occurred()) {
            signal = -2;
        }
        else if (slots + count * ENTRY_SIZE > self->max_slots) {
            /* Over the bound in total: once per take, have the writer take
             * everything and drop the oldest. */
            self->over = 1;
            signal = 2;
        }
    }
    Py_DECREF(items);
    return signal;
}

static PyObject *
buffer_put_values(State *state, BufferObject *self, PyObject *database,
                  PyObject *name, PyObject *tags, PyObject *fields,
                  PyObject *time)
{
    PyObject *lock = self->lock;
    if (lock == NULL || state->monotonic == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the buffer is not set up");
        return NULL;
    }
    Py_INCREF(lock);
    /* The Buffer's own lock is taken directly; another (a threading.Lock
     * a test put there) by its methods. */
    int direct = state->lock_type != NULL
                 && Py_IS_TYPE(lock, (PyTypeObject *)state->lock_type);
    if (direct) {
        if (buffer_lock_take((BufferLockObject *)lock) < 0) {
            Py_DECREF(lock);
            return NULL;
        }
    }
    else {
        PyObject *acquired = call_method0(lock, state->str_acquire);
        if (acquired == NULL) {
            Py_DECREF(lock);
            return NULL;
        }
        Py_DECREF(acquired);
    }
    PyObject *dropped[ENTRY_SIZE] = {NULL};
    int signal = buffer_put_locked(state, self, database, name, tags, fields,
                                   time, dropped);
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyObject *released;
    if (direct) {
        buffer_lock_give((BufferLockObject *)lock);
        released = Py_None;
        Py_INCREF(released);
    }
    else {
        released = call_method0(lock, state->str_release);
    }
    Py_DECREF(lock);
    for (int i = 0; i < ENTRY_SIZE; i++) {
        Py_XDECREF(dropped[i]);
    }
    if (released == NULL) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(traceback);
        return NULL;
    }
    Py_DECREF(released);
    PyErr_Restore(type, value, traceback);
    if (signal == -2) {
        return NULL;
    }
    return PyLong_FromLong(signal);
}

static PyObject *
buffer_put(PyObject *op, PyTypeObject *cls, PyObject *const *args,
           Py_ssize_t nargs, PyObject *kwnames)
{
    State *state = PyType_GetModuleState(cls);
    if (state == NULL) {
        return NULL;
    }
    if (nargs != 5 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "put() takes database, name, tags, fields and "
                        "timestamp");
        return NULL;
    }
    return buffer_put_values(state, (BufferObject *)op, args[0], args[1],
                             args[2], args[3], args[4]);
}

/* put() with what add_measurement queues of the measurement: its signal,
 * or NULL with an error. */
static PyObject *
buffer_add_measurement(State *state, BufferObject *buffer,
                       PyObject *measurement)
{
    PyObject *pair = NULL, *database = NULL, *name = NULL, *time = NULL;
    PyObject *result = NULL;
    if (state->measurement_type != NULL
        && PyObject_TypeCheck(measurement,
                              (PyTypeObject *)state->measurement_type)) {
        MeasurementObject *point = (MeasurementObject *)measurement;
        if (point->tags == NULL) {
            return no_attribute(measurement, "tags");
        }
        PyObject *tags = queued_tags(point);
        if (tags == NULL) {
            return NULL;
        }
        /* (Copying a mapping that is no dict may have run code: what is
         * read of the measurement is read from here on.) */
        PyObject *fields = queued_fields(point);
        if (fields == NULL) {
            Py_DECREF(tags);
            return NULL;
        }
        database = point->database;
        name = point->name;
        time = point->time;
        if (database == NULL || name == NULL || time == NULL) {
            Py_DECREF(tags);
            Py_DECREF(fields);
            return no_attribute(measurement, database == NULL ? "database"
                                             : name == NULL   ? "name"
                                                              : "_time");
        }
        point->lent = 0; /* queued with it */
        Py_INCREF(database);
        Py_INCREF(name);
        Py_INCREF(time);
        result = buffer_put_values(state, buffer, database, name, tags,
                                   fields, time);
        Py_DECREF(tags);
        Py_DECREF(fields);
        goto done;
    }
    else {
        pair = PyObject_CallMethod(measurement, "_snapshot", NULL);
        if (pair == NULL) {
            return NULL;
        }
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2) {
            Py_DECREF(pair);
            PyErr_SetString(PyExc_TypeError, "_snapshot() returned no pair");
            return NULL;
        }
        database = PyObject_GetAttrString(measurement, "database");
        name = database ? PyObject_GetAttrString(measurement, "name") : NULL;
        time = name ? PyObject_GetAttrString(measurement, "_time") : NULL;
        if (time == NULL) {
            goto done;
        }
    }
    result = buffer_put_values(state, buffer, database, name,
                               PyTuple_GET_ITEM(pair, 0),
                               PyTuple_GET_ITEM(pair, 1), time);
done:
    Py_XDECREF(pair);
    Py_XDECREF(database);
    Py_XDECREF(name);
    Py_XDECREF(time);
    return result;
}

/* add(measurement): put() with what add_measurement queues of it. */
static PyObject *
buffer_add(PyObject *op, PyTypeObject *cls, PyObject *const *args,
           Py_ssize_t nargs, PyObject *kwnames)
{
    State *state = PyType_GetModuleState(cls);
    if (state == NULL) {
        return NULL;
    }
    if (nargs != 1 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "add() takes a measurement");
        return NULL;
    }
    return buffer_add_measurement(state, (BufferObject *)op, args[0]);
}

static int
buffer_traverse(PyObject *op, visitproc visit, void *arg)
{
    BufferObject *self = (BufferObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->lock);
    Py_VISIT(self->items);
    Py_VISIT(self->elsewhere);
    Py_VISIT(self->since);
    return 0;
}

static int
buffer_clear(PyObject *op)
{
    BufferObject *self = (BufferObject *)op;
    Py_CLEAR(self->lock);
    Py_CLEAR(self->items);
    Py_CLEAR(self->elsewhere);
    Py_CLEAR(self->since);
    return 0;
}

static void
buffer_dealloc(PyObject *op)
{
    PyTypeObject *type = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    buffer_clear(op);
    type->tp_free(op);
    Py_DECREF(type);
}

static PyMethodDef buffer_methods[] = {
    {"put", (PyCFunction)(void (*)(void))buffer_put, METHOD_FLAGS, NULL},
    {"add", (PyCFunction)(void (*)(void))buffer_add, METHOD_FLAGS,
     "add($self, measurement, /)\n--\n\n"
     "put() the values of a measurement, copies of its tags and fields."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef buffer_members[] = {
    {"_lock", T_OBJECT, offsetof(BufferObject, lock), 0, NULL},
    {"_items", T_OBJECT, offsetof(BufferObject, items), 0, NULL},
    {"_elsewhere", T_OBJECT, offsetof(BufferObject, elsewhere), 0, NULL},
    {"since", T_OBJECT, offsetof(BufferObject, since), 0, NULL},
    {"_max_size", T_PYSSIZET, offsetof(BufferObject, max_size), 0, NULL},
    {"_trigger_size", T_PYSSIZET, offsetof(BufferObject, trigger_size), 0,
     NULL},
    {"_max_slots", T_PYSSIZET, offsetof(BufferObject, max_slots), 0, NULL},
    {"_trigger_slots", T_PYSSIZET, offsetof(BufferObject, trigger_slots), 0,
     NULL},
    {"_sequence", T_PYSSIZET, offsetof(BufferObject, sequence), 0, NULL},
    {"overflowed", T_PYSSIZET, offsetof(BufferObject, overflowed), 0, NULL},
    {"_over", T_BOOL, offsetof(BufferObject, over), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot buffer_slots[] = {
    {Py_tp_doc, "The compiled base of Buffer."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, buffer_dealloc},
    {Py_tp_traverse, buffer_traverse},
    {Py_tp_clear, buffer_clear},
    {Py_tp_methods, buffer_methods},
    {Py_tp_members, buffer_members},
    {0, NULL},
};

static PyType_Spec buffer_spec = {
    "sprockets_influxdb._speedups.BufferBase",
    sizeof(BufferObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    buffer_slots,
};

/* configure_buffer(monotonic): the clock of Buffer.since. */
static PyObject *
configure_buffer(PyObject *module, PyObject *monotonic)
{
    State *state = get_state(module);
    Py_INCREF(monotonic);
    Py_XSETREF(state->monotonic, monotonic);
    Py_RETURN_NONE;
}

/* configure_measurement(tag_pair_cache, init, set_tag, set_field,
 * set_timestamp): the cache and the pure Python methods. */
static PyObject *
configure_measurement(PyObject *module, PyObject *args)
{
    PyObject *pairs, *init, *set_tag, *set_field, *set_timestamp;
    if (!PyArg_ParseTuple(args, "O!OOOO", &PyDict_Type, &pairs, &init,
                          &set_tag, &set_field, &set_timestamp)) {
        return NULL;
    }
    /* The documentation of the pure Python methods, under the signatures
     * they take: help() and the API reference show the same text. */
    static const char *const signatures[3][2] = {
        {"set_tag", "set_tag($self, name, value)\n--\n\n"},
        {"set_field", "set_field($self, name, value)\n--\n\n"},
        {"set_timestamp",
         "set_timestamp($self, value, *, unique=False)\n--\n\n"},
    };
    PyObject *functions[3] = {set_tag, set_field, set_timestamp};
    for (int i = 0; i < 3; i++) {
        PyObject *doc = PyObject_GetAttrString(functions[i], "__doc__");
        if (doc == NULL) {
            return NULL;
        }
        if (!PyUnicode_Check(doc) || measurement_methods[i].ml_doc != NULL) {
            Py_DECREF(doc);
            continue;
        }
        const char *text = PyUnicode_AsUTF8(doc);
        if (text == NULL) {
            Py_DECREF(doc);
            return NULL;
        }
        size_t size = strlen(signatures[i][1]) + strlen(text) + 1;
        /* Kept for the life of the process, as the method table is. */
        char *full = PyMem_RawMalloc(size);
        if (full == NULL) {
            Py_DECREF(doc);
            return PyErr_NoMemory();
        }
        snprintf(full, size, "%s%s", signatures[i][1], text);
        Py_DECREF(doc);
        measurement_methods[i].ml_doc = full;
    }
    State *state = get_state(module);
    Py_INCREF(pairs);
    Py_XSETREF(state->tag_pair_cache, pairs);
    Py_INCREF(init);
    Py_XSETREF(state->py_init, init);
    Py_INCREF(set_tag);
    Py_XSETREF(state->py_set_tag, set_tag);
    Py_INCREF(set_field);
    Py_XSETREF(state->py_set_field, set_field);
    Py_INCREF(set_timestamp);
    Py_XSETREF(state->py_set_timestamp, set_timestamp);
    Py_RETURN_NONE;
}

/* configure_default_tags(tags): the dict new measurements start with a
 * copy of, or None (the pure Python __init__ finds them). */
static PyObject *
configure_default_tags(PyObject *module, PyObject *tags)
{
    if (tags != Py_None && !PyDict_CheckExact(tags)) {
        PyErr_SetString(PyExc_TypeError,
                        "configure_default_tags() needs a dict or None");
        return NULL;
    }
    State *state = get_state(module);
    if (tags == Py_None) {
        Py_CLEAR(state->default_tags);
    }
    else {
        Py_INCREF(tags);
        Py_XSETREF(state->default_tags, tags);
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------
 * The compiled base of sprockets_influxdb.request_metrics.RequestRecord:
 * its attributes, and _finish() for the request path's common case (no
 * error, the handlers set no tag, a plain Client open): the same steps as
 * the Python method's branch for that case, which it leaves everything
 * else to (RequestRecord._finish_py).
 * ------------------------------------------------------------------------
 */

typedef struct {
    PyObject_HEAD
    PyObject *recorder;
    PyObject *method;
    PyObject *started;
    PyObject *measurement;
    /* The time of the request's point when the record makes its
     * measurement or queues it without one (the arrival as the server
     * timed it, on the clock's lattice); 0: dated back from the clock's
     * time instead. */
    long long arrival;
    char finished;
} RecordObject;

/* time.monotonic(), as CPython computes it on this platform. */
static int
monotonic_seconds(double *seconds)
{
    struct timespec now;
    if (clock_gettime(CLOCK_MONOTONIC, &now) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    long long ns = (long long)now.tv_sec * 1000000000LL
                   + (long long)now.tv_nsec;
    *seconds = (double)ns / 1e9;
    return 0;
}

/* ------------------------------------------------------------------------
 * RecorderBase: the compiled base of request_metrics.RequestRecorder.  The
 * attributes the request paths read for every request (the names, the
 * methods, the exclusions, the client or package, the cache of whole
 * tags) are kept in its fields, which Python reads and sets as ordinary
 * attributes and C reads without a lookup.
 * ------------------------------------------------------------------------
 */

enum {
    RECORDER_DATABASE,
    RECORDER_MEASUREMENT,
    RECORDER_METHODS,
    RECORDER_EXCLUDED,
    RECORDER_CLIENT,
    RECORDER_PACKAGE,
    RECORDER_WHOLE_TAGS,
    RECORDER_FIELDS
};

/* The attribute name of each field, as an index of record_names. */
static const int RECORDER_NAMES[RECORDER_FIELDS] = {
    NAME_DATABASE, NAME_MEASUREMENT, NAME_METHODS,    NAME_EXCLUDED,
    NAME_CLIENT,   NAME_PACKAGE,     NAME_WHOLE_TAGS,
};

typedef struct {
    PyObject_HEAD
    PyObject *fields[RECORDER_FIELDS];
} RecorderObject;

#define RECORDER_MEMBER(name, index)                                       \
    {name, T_OBJECT_EX,                                                    \
     offsetof(RecorderObject, fields) + (index) * sizeof(PyObject *), 0,   \
     NULL}

static PyMemberDef recorder_members[] = {
    RECORDER_MEMBER("database", RECORDER_DATABASE),
    RECORDER_MEMBER("measurement", RECORDER_MEASUREMENT),
    RECORDER_MEMBER("methods", RECORDER_METHODS),
    RECORDER_MEMBER("_excluded", RECORDER_EXCLUDED),
    RECORDER_MEMBER("_client", RECORDER_CLIENT),
    RECORDER_MEMBER("_package", RECORDER_PACKAGE),
    RECORDER_MEMBER("_whole_tags", RECORDER_WHOLE_TAGS),
    {NULL, 0, 0, 0, NULL},
};

#undef RECORDER_MEMBER

static int
recorder_traverse(PyObject *op, visitproc visit, void *arg)
{
    RecorderObject *self = (RecorderObject *)op;
    Py_VISIT(Py_TYPE(op));
    for (int i = 0; i < RECORDER_FIELDS; i++) {
        Py_VISIT(self->fields[i]);
    }
    return 0;
}

static int
recorder_clear(PyObject *op)
{
    RecorderObject *self = (RecorderObject *)op;
    for (int i = 0; i < RECORDER_FIELDS; i++) {
        Py_CLEAR(self->fields[i]);
    }
    return 0;
}

static void
recorder_dealloc(PyObject *op)
{
    PyTypeObject *type = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    recorder_clear(op);
    type->tp_free(op);
    Py_DECREF(type);
}

static PyType_Slot recorder_slots[] = {
    {Py_tp_doc, "The compiled base of RequestRecorder."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, recorder_dealloc},
    {Py_tp_traverse, recorder_traverse},
    {Py_tp_clear, recorder_clear},
    {Py_tp_members, recorder_members},
    {0, NULL},
};

static PyType_Spec recorder_spec = {
    "sprockets_influxdb._speedups.RecorderBase",
    sizeof(RecorderObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    recorder_slots,
};

/* The attribute *which* (RECORDER_*) of *recorder*: a new reference, NULL
 * on an error.  Read from the field of a RecorderBase whose attribute
 * lookup is the ordinary one; else (another kind of recorder, a field not
 * set, a subclass with __getattribute__ or __getattr__) looked up, which
 * raises what Python would. */
static PyObject *
recorder_get(State *state, PyObject *recorder, int which)
{
    PyTypeObject *type = Py_TYPE(recorder);
    PyTypeObject *base = (PyTypeObject *)state->recorder_type;
    if (base != NULL && type->tp_getattro == PyObject_GenericGetAttr
        && (type->tp_base == base || PyType_IsSubtype(type, base))) {
        PyObject *value = ((RecorderObject *)recorder)->fields[which];
        if (value != NULL) {
            Py_INCREF(value);
            return value;
        }
    }
    return PyObject_GetAttr(recorder,
                            state->record_names[RECORDER_NAMES[which]]);
}

/* getattr(package, name) for the package the recorders of the default
 * client hold: read from the module's dict (no class attribute of a
 * module has these names), looked up when it is something else or the
 * name is missing (which raises the AttributeError Python would). */
static PyObject *
package_get(PyObject *package, PyObject *name)
{
    if (PyModule_CheckExact(package)) {
        PyObject *names = PyModule_GetDict(package);
        PyObject *value = PyDict_GetItemWithError(names, name);
        if (value != NULL) {
            Py_INCREF(value);
            return value;
        }
        if (PyErr_Occurred()) {
            return NULL;
        }
    }
    return PyObject_GetAttr(package, name);
}

/* The client a recorder hands its measurements to, as the Python method
 * finds it: a new reference, Py_None when there is none or when the
 * package's add_measurement is not the library's own (a test's mock, which
 * the Python method calls), NULL on an error. */
static PyObject *
record_client(State *state, PyObject *recorder)
{
    PyObject *client = recorder_get(state, recorder, RECORDER_CLIENT);
    if (client == NULL || client != Py_None) {
        return client;
    }
    Py_DECREF(client);
    PyObject *package = recorder_get(state, recorder, RECORDER_PACKAGE);
    if (package == NULL || package == Py_None) {
        return package;
    }
    PyObject *add = package_get(package,
                                state->record_names[NAME_ADD_MEASUREMENT]);
    if (add == NULL || add != state->record_names[NAME_MODULE_ADD]) {
        Py_DECREF(package);
        if (add == NULL) {
            return NULL;
        }
        Py_DECREF(add);
        Py_RETURN_NONE;
    }
    Py_DECREF(add);
    client = package_get(package, state->record_names[NAME_DEFAULT]);
    Py_DECREF(package);
    return client;
}

/* 1 when *client*'s add_measurement is the library's own Client
 * add_measurement, not one patched on the instance or the class since (a
 * test's mock, which must be called); 0 when not, -1 on an error. */
static int
client_adds_plainly(State *state, PyObject *client)
{
    PyObject *name = state->record_names[NAME_ADD_MEASUREMENT];
    PyTypeObject *type = Py_TYPE(client);
    if (type->tp_getattro == PyObject_GenericGetAttr
        && _PyType_Lookup(type, name) == state->record_names[NAME_CLIENT_ADD]) {
        /* The class's own function, found on the class as attribute
         * lookup finds it (a plain function is no data descriptor): plain
         * unless the instance's dict has one of its own (a mock patched
         * on the instance), which this reads without making the bound
         * method. */
        PyObject *own = PyObject_GenericGetDict(client, NULL);
        if (own != NULL) {
            int found = PyDict_CheckExact(own) ? PyDict_Contains(own, name)
                                               : -2;
            Py_DECREF(own);
            if (found >= 0) {
                return !found;
            }
            if (found == -1) {
                return -1;
            }
        }
        else if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear(); /* no __dict__: the general way below */
        }
        else {
            return -1;
        }
    }
    PyObject *method = PyObject_GetAttr(client, name);
    if (method == NULL) {
        return -1;
    }
    int plain = PyMethod_Check(method)
                && PyMethod_GET_FUNCTION(method)
                       == state->record_names[NAME_CLIENT_ADD]
                && PyMethod_GET_SELF(method) == client;
    Py_DECREF(method);
    return plain;
}

/* The compiled Buffer that *bound* is *function* of (borrowed from
 * *bound*), or NULL when it is something else. */
static BufferObject *
bound_buffer(State *state, PyObject *bound, PyCFunction function)
{
    PyObject *owner = PyCFunction_Check(bound) ? PyCFunction_GET_SELF(bound)
                                               : NULL;
    if (owner == NULL || state->buffer_type == NULL
        || PyCFunction_GET_FUNCTION(bound) != function
        || !PyObject_TypeCheck(owner, (PyTypeObject *)state->buffer_type)) {
        return NULL;
    }
    return (BufferObject *)owner;
}

/* client._signalled(signal) when what the buffer said (signal) calls for
 * it: 0, or -1 on an error. */
static int
client_signalled(State *state, PyObject *client, PyObject *signal)
{
    int raised = PyObject_IsTrue(signal);
    if (raised <= 0) {
        return raised;
    }
    PyObject *call[2] = {client, signal};
    PyObject *acted = PyObject_VectorcallMethod(
        state->record_names[NAME_SIGNALLED], call,
        2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (acted == NULL) {
        return -1;
    }
    Py_DECREF(acted);
    return 0;
}

/* put(database, name, tags, fields, time) on the client's buffer: its
 * _put, called directly when it is the compiled Buffer's. */
static PyObject *
record_put(State *state, PyObject *client, PyObject *const *values)
{
    PyObject *put = PyObject_GetAttr(client, state->record_names[NAME_PUT]);
    if (put == NULL) {
        return NULL;
    }
    PyObject *result;
    BufferObject *buffer = bound_buffer(
        state, put, (PyCFunction)(void (*)(void))buffer_put);
    if (buffer != NULL) {
        result = buffer_put_values(state, buffer, values[0], values[1],
                                   values[2], values[3], values[4]);
    }
    else {
        result = PyObject_Vectorcall(put, values, 5, NULL);
    }
    Py_DECREF(put);
    return result;
}

/* fast_add(client, measurement): what the client's add_measurement does,
 * for a plain, open Client (no subclass overriding add_measurement) whose
 * buffer is the compiled one and a compiled measurement with fields.
 * True when it was queued; False when it is not that case (nothing was
 * done: the caller calls client.add_measurement, which raises what is
 * wrong). */
static PyObject *
fast_add(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    State *state = get_state(module);
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError,
                        "fast_add() takes a client and a measurement");
        return NULL;
    }
    PyObject *client = args[0], *measurement = args[1];
    if (state->measurement_type == NULL || state->buffer_type == NULL
        || !PyObject_TypeCheck(measurement,
                               (PyTypeObject *)state->measurement_type)) {
        Py_RETURN_FALSE;
    }
    PyObject *fields = ((MeasurementObject *)measurement)->fields;
    if (fields == NULL || !PyDict_CheckExact(fields)
        || PyDict_GET_SIZE(fields) == 0) {
        Py_RETURN_FALSE;
    }
    PyObject *open = PyObject_GetAttr(client,
                                      state->record_names[NAME_OPEN_PLAIN]);
    if (open == NULL) {
        return NULL;
    }
    Py_DECREF(open);
    if (open != Py_True) {
        Py_RETURN_FALSE;
    }
    int plain = client_adds_plainly(state, client);
    if (plain <= 0) {
        if (plain < 0) {
            return NULL;
        }
        Py_RETURN_FALSE;
    }
    PyObject *add = PyObject_GetAttr(client, state->record_names[NAME_ADD]);
    if (add == NULL) {
        return NULL;
    }
    BufferObject *buffer = bound_buffer(
        state, add, (PyCFunction)(void (*)(void))buffer_add);
    if (buffer == NULL) {
        Py_DECREF(add);
        Py_RETURN_FALSE;
    }
    /* (add holds the buffer.) */
    PyObject *signal = buffer_add_measurement(state, buffer, measurement);
    Py_DECREF(add);
    int failed = signal == NULL || client_signalled(state, client, signal);
    Py_XDECREF(signal);
    if (failed) {
        return NULL;
    }
    Py_RETURN_TRUE;
}

/* configure_add(client_add, module_add): Client.add_measurement, which
 * fast_add stands for, and the module's add_measurement; a request is
 * recorded in C only when neither was replaced (by a test's mock). */
static PyObject *
configure_add(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyFunction_Check(args[0])
        || !PyFunction_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError,
                        "configure_add() needs Client.add_measurement and "
                        "the module's add_measurement");
        return NULL;
    }
    State *state = get_state(module);
    Py_INCREF(args[0]);
    Py_XSETREF(state->record_names[NAME_CLIENT_ADD], args[0]);
    Py_INCREF(args[1]);
    Py_XSETREF(state->record_names[NAME_MODULE_ADD], args[1]);
    Py_RETURN_NONE;
}

/* The common case of _finish: 1 when the request was queued, 0 when it is
 * not that case (nothing was done), -1 on an error. */
static int
record_fast(State *state, RecordObject *self, PyObject *status,
            PyObject *endpoint, PyObject *handler, PyObject *length,
            double end, int gone)
{
    PyObject *base = state->default_tags;
    PyObject *measurement = self->measurement;
    PyObject *recorder = self->recorder;
    if (base == NULL || recorder == NULL || self->method == NULL
        || self->started == NULL || !PyFloat_CheckExact(self->started)
        || state->measurement_type == NULL
        || (measurement != NULL
            && !PyObject_TypeCheck(measurement,
                                   (PyTypeObject *)state->measurement_type))) {
        return 0;
    }
    /* No measurement: begun without one, and no handler asked for it (no
     * tag, no field of its own): the base tags, no fields, the
     * recorder's names and a time dated back from the clock's. */
    MeasurementObject *point = (MeasurementObject *)measurement;
    if (point != NULL
        && (point->database == NULL || point->name == NULL
            || point->time == NULL || point->tags == NULL
            || !PyDict_CheckExact(point->tags)
            || (point->fields == NULL ? !point->fields_lazy
                                      : !PyDict_CheckExact(point->fields)))) {
        return 0;
    }
    /* Held: the code that runs below may replace any of them.  (No fields
     * dict yet: none.) */
    PyObject *held[6] = {base,
                         measurement,
                         recorder,
                         point ? point->tags : base,
                         point ? point->fields : NULL,
                         self->method};
    for (int i = 0; i < 6; i++) {
        Py_XINCREF(held[i]);
    }
    PyObject *tags = held[3], *fields = held[4];
    PyObject *client = NULL, *key = NULL, *whole = NULL, *values = NULL;
    PyObject *number = NULL, *duration = NULL, *signal = NULL;
    PyObject *cache = NULL, *database = NULL, *name = NULL, *time = NULL;
    int outcome = -1;
    client = record_client(state, recorder);
    if (client == NULL) {
        goto done;
    }
    outcome = 0;
    if (client == Py_None) {
        goto done;
    }
    PyObject *open = PyObject_GetAttr(client,
                                      state->record_names[NAME_OPEN_PLAIN]);
    int is_open = open == NULL ? -1 : PyObject_IsTrue(open);
    Py_XDECREF(open);
    if (is_open <= 0) {
        outcome = is_open;
        goto done;
    }
    int plain = client_adds_plainly(state, client);
    if (plain <= 0) {
        outcome = plain;
        goto done;
    }
    if (tags != base) {
        if (PyDict_GET_SIZE(tags) != PyDict_GET_SIZE(base)) {
            goto done;
        }
        int same = PyObject_RichCompareBool(tags, base, Py_EQ);
        if (same <= 0) {
            outcome = same;
            goto done;
        }
    }
    /* From here on, the request is this case: done or an error. */
    outcome = -1;
    if (gone) {
        number = PyLong_FromLong(499);
        if (number == NULL) {
            goto done;
        }
        status = number;
    }
    PyObject *unmatched = state->record_names[NAME_UNMATCHED];
    if (endpoint == Py_None) {
        endpoint = unmatched;
        handler = Py_None;
    }
    else {
        int same = PyObject_RichCompareBool(endpoint, unmatched, Py_EQ);
        if (same < 0) {
            goto done;
        }
        if (same) {
            endpoint = unmatched;
            handler = Py_None;
        }
    }
    key = PyTuple_Pack(4, self->method, endpoint, handler, status);
    if (key == NULL) {
        goto done;
    }
    double seconds = end - PyFloat_AS_DOUBLE(self->started);
    if (!(seconds > 0.0)) {
        seconds = 0.0;
    }
    cache = recorder_get(state, recorder, RECORDER_WHOLE_TAGS);
    if (cache == NULL) {
        goto done;
    }
    PyObject *entry = PyDict_CheckExact(cache)
                          ? PyDict_GetItemWithError(cache, key)
                          : NULL;
    if (entry == NULL && PyErr_Occurred()) {
        goto done;
    }
    if (entry != NULL && PyTuple_CheckExact(entry)
        && PyTuple_GET_SIZE(entry) == 2 && PyTuple_GET_ITEM(entry, 0) == base) {
        whole = PyTuple_GET_ITEM(entry, 1);
        Py_INCREF(whole);
    }
    else {
        PyObject *args[3] = {recorder, key, base};
        whole = PyObject_VectorcallMethod(
            state->record_names[NAME_WHOLE], args,
            3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        if (whole == NULL) {
            goto done;
        }
    }
    values = fields != NULL && PyDict_GET_SIZE(fields) ? PyDict_Copy(fields)
                                                       : PyDict_New();
    duration = values ? PyFloat_FromDouble(seconds) : NULL;
    if (duration == NULL
        || PyDict_SetItem(values, state->record_names[NAME_DURATION],
                          duration) < 0
        || PyDict_SetItem(values, state->record_names[NAME_CONTENT_LENGTH],
                          length) < 0) {
        goto done;
    }
    if (point != NULL) {
        database = point->database;
        name = point->name;
        time = point->time;
        Py_INCREF(database);
        Py_INCREF(name);
        Py_INCREF(time);
        point->lent = 0; /* queued with it */
    }
    else {
        long long moment = 0;
        database = recorder_get(state, recorder, RECORDER_DATABASE);
        name = database ? recorder_get(state, recorder, RECORDER_MEASUREMENT)
                        : NULL;
        if (name == NULL || !PyUnicode_CheckExact(database)
            || !PyUnicode_CheckExact(name)
            || (self->arrival == 0 && clock_moment(state, &moment) < 0)) {
            goto done;
        }
        /* The arrival, or as date_back() moves a time: whole
         * microseconds, so that it still ends in the process's
         * discriminator. */
        time = PyLong_FromLongLong(
            self->arrival != 0 ? self->arrival
                               : moment - (long long)(seconds * 1e6) * 1000);
        if (time == NULL) {
            goto done;
        }
    }
    PyObject *entry_values[5] = {database, name, whole, values, time};
    signal = record_put(state, client, entry_values);
    if (signal == NULL) {
        goto done;
    }
    if (client_signalled(state, client, signal) < 0) {
        goto done;
    }
    outcome = 1;
done:
    Py_XDECREF(client);
    Py_XDECREF(key);
    Py_XDECREF(whole);
    Py_XDECREF(values);
    Py_XDECREF(number);
    Py_XDECREF(duration);
    Py_XDECREF(signal);
    Py_XDECREF(cache);
    Py_XDECREF(database);
    Py_XDECREF(name);
    Py_XDECREF(time);
    for (int i = 0; i < 6; i++) {
        Py_XDECREF(held[i]);
    }
    return outcome;
}

/* _finish(status, endpoint, handler, content_length, error, disconnected,
 * ended): RequestRecord.finish, its arguments by position. */
static PyObject *
record_finish_with(State *state, PyObject *op, PyObject *const *args);

static PyObject *
record_finish(PyObject *op, PyTypeObject *cls, PyObject *const *args,
              Py_ssize_t nargs, PyObject *kwnames)
{
    State *state = PyType_GetModuleState(cls);
    if (state == NULL) {
        return NULL;
    }
    if (nargs != 7 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "_finish() takes status, endpoint, handler, "
                        "content_length, error, disconnected and ended");
        return NULL;
    }
    return record_finish_with(state, op, args);
}

/* _finish() with its seven arguments. */
static PyObject *
record_finish_with(State *state, PyObject *op, PyObject *const *args)
{
    RecordObject *self = (RecordObject *)op;
    if (self->finished) {
        Py_RETURN_NONE;
    }
    PyObject *ended = args[6];
    double end;
    if (ended == Py_None) {
        if (monotonic_seconds(&end) < 0) {
            return NULL;
        }
    }
    else if (PyFloat_CheckExact(ended)) {
        end = PyFloat_AS_DOUBLE(ended);
    }
    else {
        goto python;
    }
    if (args[4] != Py_None || !PyLong_CheckExact(args[0])
        || !PyLong_CheckExact(args[3])
        || state->record_names[NAME_UNMATCHED] == NULL) {
        goto python;
    }
    int gone = PyObject_IsTrue(args[5]);
    if (gone < 0) {
        return NULL;
    }
    Py_INCREF(op);
    self->finished = 1;
    int outcome = record_fast(state, self, args[0], args[1], args[2],
                              args[3], end, gone);
    if (outcome == 0) {
        self->finished = 0;
        Py_DECREF(op);
        goto python;
    }
    if (outcome < 0) {
        /* Recording must never fail a request: reported as the Python
         * method reports it. */
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            Py_DECREF(op);
            return NULL;
        }
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        PyErr_NormalizeException(&type, &value, &traceback);
        if (traceback != NULL && value != NULL) {
            PyException_SetTraceback(value, traceback);
        }
        Py_XDECREF(type);
        Py_XDECREF(traceback);
        PyObject *recorder = self->recorder;
        PyObject *reported = NULL;
        if (recorder != NULL && value != NULL) {
            PyObject *call[3] = {recorder,
                                 state->record_names[NAME_FAILURE], value};
            reported = PyObject_VectorcallMethod(
                state->record_names[NAME_REPORT_FAILURE], call,
                3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        }
        Py_XDECREF(value);
        Py_DECREF(op);
        if (reported == NULL) {
            return NULL;
        }
        Py_DECREF(reported);
        Py_RETURN_NONE;
    }
    Py_DECREF(op);
    Py_RETURN_NONE;
python: ;
    /* Everything else: the Python method, with the end taken here. */
    PyObject *stack[8] = {op, args[0], args[1], args[2], args[3], args[4],
                          args[5], NULL};
    PyObject *taken = NULL;
    if (ended == Py_None) {
        taken = PyFloat_FromDouble(end);
        if (taken == NULL) {
            return NULL;
        }
        stack[7] = taken;
    }
    else {
        stack[7] = ended;
    }
    PyObject *result = PyObject_VectorcallMethod(
        state->record_names[NAME_FINISH_PY], stack,
        8 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_XDECREF(taken);
    return result;
}

static int
record_traverse(PyObject *op, visitproc visit, void *arg)
{
    RecordObject *self = (RecordObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->recorder);
    Py_VISIT(self->method);
    Py_VISIT(self->started);
    Py_VISIT(self->measurement);
    return 0;
}

static int
record_clear(PyObject *op)
{
    RecordObject *self = (RecordObject *)op;
    Py_CLEAR(self->recorder);
    Py_CLEAR(self->method);
    Py_CLEAR(self->started);
    Py_CLEAR(self->measurement);
    return 0;
}

/* Free a record of any of the compiled record types, *clear* being the
 * clear function of its compiled type. */
static void
record_dealloc_with(PyObject *op, inquiry clear)
{
    PyTypeObject *type = Py_TYPE(op);
    if (PyObject_CallFinalizerFromDealloc(op) < 0) {
        return; /* resurrected by _released() */
    }
    PyObject_GC_UnTrack(op);
    clear(op);
    type->tp_free(op);
    Py_DECREF(type);
}

static void
record_dealloc(PyObject *op)
{
    record_dealloc_with(op, record_clear);
}

/* A record freed before it was finished (a WSGI response neither
 * exhausted nor closed): its _released() is called, which records it.
 * Nothing to do, and no Python frame, for a finished one. */
static void
record_finalize(PyObject *op)
{
    if (((RecordObject *)op)->finished) {
        return;
    }
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyObject *result = PyObject_CallMethod(op, "_released", NULL);
    if (result == NULL) {
        /* Released at any time, the interpreter's exit included: never an
         * error printed from a finalizer (_released reports its own). */
        PyErr_Clear();
    }
    else {
        Py_DECREF(result);
    }
    PyErr_Restore(type, value, traceback);
}

static PyMethodDef record_methods[] = {
    {"_finish", (PyCFunction)(void (*)(void))record_finish, METHOD_FLAGS,
     "_finish($self, status, endpoint, handler, content_length, error, "
     "disconnected, ended, /)\n--\n\n"
     "finish(), its arguments by position (the integrations')."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef record_members[] = {
    {"recorder", T_OBJECT_EX, offsetof(RecordObject, recorder), 0, NULL},
    {"method", T_OBJECT_EX, offsetof(RecordObject, method), 0, NULL},
    {"started", T_OBJECT_EX, offsetof(RecordObject, started), 0, NULL},
    {"finished", T_BOOL, offsetof(RecordObject, finished), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

/* The measurement of a record begun without one (tornado_begin): made
 * now, dated back to the request's arrival (started) as date_back()
 * does, from the clock's time of now: it ends in the process's
 * discriminator like every other time of the clock. */
static PyObject *
record_get_measurement(PyObject *op, void *closure)
{
    (void)closure;
    RecordObject *self = (RecordObject *)op;
    if (self->measurement != NULL) {
        Py_INCREF(self->measurement);
        return self->measurement;
    }
    State *state = state_of_type(Py_TYPE(op));
    if (state == NULL) {
        return NULL;
    }
    PyObject *recorder = self->recorder;
    if (recorder == NULL || self->started == NULL
        || !PyFloat_CheckExact(self->started)
        || state->record_names[NAME_MEASUREMENT_CLASS] == NULL) {
        return no_attribute(op, "measurement");
    }
    Py_INCREF(recorder);
    PyObject *names[2] = {NULL, NULL};
    PyObject *measurement = NULL, *moment = NULL, *later = NULL;
    names[0] = recorder_get(state, recorder, RECORDER_DATABASE);
    names[1] = names[0] ? recorder_get(state, recorder, RECORDER_MEASUREMENT)
                        : NULL;
    if (names[1] == NULL) {
        goto done;
    }
    measurement = new_measurement(state, names[0], names[1]);
    double now;
    if (measurement == NULL || monotonic_seconds(&now) < 0) {
        goto failed;
    }
    double ago = now - PyFloat_AS_DOUBLE(self->started);
    if (!(ago > 0.0)) {
        ago = 0.0;
    }
    moment = PyObject_GetAttr(measurement, state->record_names[NAME_TIME]);
    if (moment == NULL) {
        goto failed;
    }
    long long taken = PyLong_AsLongLong(moment);
    if (taken == -1 && PyErr_Occurred()) {
        goto failed;
    }
    if (self->arrival != 0) {
        /* The arrival: the clock's time, which nothing read, is given
         * back (unless it is the same time). */
        if (self->arrival != taken) {
            clock_take_back(state, taken);
        }
        later = PyLong_FromLongLong(self->arrival);
    }
    else {
        later = PyLong_FromLongLong(taken - (long long)(ago * 1e6) * 1000);
    }
    if (later == NULL
        || PyObject_SetAttr(measurement, state->record_names[NAME_TIME],
                            later) < 0) {
        goto failed;
    }
    if (self->measurement == NULL) { /* (the code above may have set it) */
        Py_INCREF(measurement);
        self->measurement = measurement;
    }
    else {
        Py_SETREF(measurement, self->measurement);
        Py_INCREF(measurement);
    }
    goto done;
failed:
    Py_CLEAR(measurement);
done:
    Py_DECREF(recorder);
    Py_XDECREF(names[0]);
    Py_XDECREF(names[1]);
    Py_XDECREF(moment);
    Py_XDECREF(later);
    return measurement;
}

static int
record_set_measurement(PyObject *op, PyObject *value, void *closure)
{
    (void)closure;
    RecordObject *self = (RecordObject *)op;
    Py_XINCREF(value);
    Py_XSETREF(self->measurement, value);
    return 0;
}

static PyGetSetDef record_getset[] = {
    {"measurement", record_get_measurement, record_set_measurement, NULL,
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot record_slots[] = {
    {Py_tp_doc, "The compiled base of RequestRecord."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, record_dealloc},
    {Py_tp_finalize, record_finalize},
    {Py_tp_traverse, record_traverse},
    {Py_tp_clear, record_clear},
    {Py_tp_methods, record_methods},
    {Py_tp_members, record_members},
    {Py_tp_getset, record_getset},
    {0, NULL},
};

static PyType_Spec record_spec = {
    "sprockets_influxdb._speedups.RequestRecordBase",
    sizeof(RecordObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    record_slots,
};

/* configure_requests(unmatched, other_method, measurement_class): the
 * endpoint of requests no route matched, the method tag of other methods
 * and the class of measurements (a subclass of MeasurementBase), of
 * sprockets_influxdb.request_metrics. */
static PyObject *
configure_requests(PyObject *module, PyObject *args)
{
    PyObject *given[3];
    if (!PyArg_ParseTuple(args, "UUO!", &given[0], &given[1], &PyType_Type,
                          &given[2])) {
        return NULL;
    }
    State *state = get_state(module);
    if (state->measurement_type == NULL
        || !PyType_IsSubtype((PyTypeObject *)given[2],
                             (PyTypeObject *)state->measurement_type)) {
        PyErr_SetString(PyExc_TypeError,
                        "configure_requests() needs a MeasurementBase "
                        "subclass");
        return NULL;
    }
    static const int names[3] = {NAME_UNMATCHED, NAME_OTHER_METHOD,
                                 NAME_MEASUREMENT_CLASS};
    for (int i = 0; i < 3; i++) {
        Py_INCREF(given[i]);
        Py_XSETREF(state->record_names[names[i]], given[i]);
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------
 * The compiled base of sprockets_influxdb.wsgi._Request: a request's
 * record that is also the response iterable the WSGI server gets.  Its
 * start (the start_response the application is given), its iteration,
 * close and complete do what the Python methods (_start_py, _iter_py,
 * _close_py, _complete_py) do, in C for the common case: a str status, a
 * list of (str, str) headers, a rule the middleware has met before, a
 * response closed after its last byte.  Anything else goes to them.
 * ------------------------------------------------------------------------
 */

typedef struct {
    RecordObject record;
    PyObject *middleware;
    PyObject *environ;
    PyObject *start_response;
    PyObject *rule;
    PyObject *result;
    PyObject *write;
    PyObject *declared;
    PyObject *iterator; /* iter(result), from the first next() on */
    long long body_bytes;
    int status;
    char exhausted; /* the iteration ended (or raised) */
} WSGIRecordObject;

/* The class's own Python method *name*, called with these arguments. */
static PyObject *
call_own(PyObject *op, PyObject *name, PyObject *const *args,
         Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *function = PyObject_GetAttr((PyObject *)Py_TYPE(op), name);
    if (function == NULL) {
        return NULL;
    }
    PyObject *result = call_python(function, op, args, nargs, kwnames);
    Py_DECREF(function);
    return result;
}

/* Whether name (an ASCII str) is Content-Length, in any case. */
static int
is_content_length(PyObject *name)
{
    static const char wanted[] = "content-length";
    if (PyUnicode_GET_LENGTH(name) != (Py_ssize_t)(sizeof(wanted) - 1)) {
        return 0;
    }
    const unsigned char *text = PyUnicode_1BYTE_DATA(name);
    for (size_t i = 0; i < sizeof(wanted) - 1; i++) {
        unsigned char c = text[i];
        if (c >= 'A' && c <= 'Z') {
            c = (unsigned char)(c - 'A' + 'a');
        }
        if (c != (unsigned char)wanted[i]) {
            return 0;
        }
    }
    return 1;
}

/* start(status, headers, exc_info=None): the start_response the
 * application is given (_start_py for anything but a str status starting
 * with three digits and a list of (ASCII str, str) tuples). */
/* int(text) for a str: read here when it is 1 to 18 ASCII digits (a
 * Content-Length as servers write it), else by int(), which accepts more
 * (signs, spaces, underscores, other digits) and raises ValueError for
 * what it does not. */
static PyObject *
digits_value(PyObject *text)
{
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    if (PyUnicode_IS_ASCII(text) && length > 0 && length <= 18) {
        const unsigned char *digits = PyUnicode_1BYTE_DATA(text);
        long long number = 0;
        Py_ssize_t i = 0;
        for (; i < length && digits[i] >= '0' && digits[i] <= '9'; i++) {
            number = number * 10 + (digits[i] - '0');
        }
        if (i == length) {
            return PyLong_FromLongLong(number);
        }
    }
    return PyLong_FromUnicodeObject(text, 10);
}

static PyObject *
wsgi_start(PyObject *op, PyTypeObject *cls, PyObject *const *args,
           Py_ssize_t nargs, PyObject *kwnames)
{
    State *state = PyType_GetModuleState(cls);
    if (state == NULL) {
        return NULL;
    }
    WSGIRecordObject *self = (WSGIRecordObject *)op;
    PyObject *key = state->record_names[NAME_REQUEST_KEY];
    PyObject *unknown = state->record_names[NAME_UNKNOWN];
    if (kwnames != NULL || nargs < 2 || nargs > 3 || key == NULL
        || unknown == NULL || self->start_response == NULL
        || !PyUnicode_CheckExact(args[0])
        || PyUnicode_GET_LENGTH(args[0]) < 3 || !PyList_CheckExact(args[1])) {
        goto python;
    }
    int code = 0;
    for (Py_ssize_t i = 0; i < 3; i++) {
        Py_UCS4 c = PyUnicode_ReadChar(args[0], i);
        if (c < '0' || c > '9') {
            goto python;
        }
        code = code * 10 + (int)(c - '0');
    }
    /* The Content-Length declared, if any: found before anything is
     * done, so that another shape of headers can still go to Python. */
    PyObject *headers = args[1], *value = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(headers); i++) {
        PyObject *item = PyList_GET_ITEM(headers, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2) {
            goto python;
        }
        PyObject *name = PyTuple_GET_ITEM(item, 0);
        if (!PyUnicode_CheckExact(name) || !PyUnicode_IS_ASCII(name)) {
            goto python;
        }
        if (is_content_length(name)) {
            value = PyTuple_GET_ITEM(item, 1);
            if (!PyUnicode_CheckExact(value)) {
                goto python;
            }
            break;
        }
    }
    PyObject *declared = Py_None;
    Py_INCREF(declared);
    if (value != NULL) {
        PyObject *number = digits_value(value);
        if (number != NULL) {
            Py_SETREF(declared, number);
        }
        else if (PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear();
        }
        else {
            Py_DECREF(declared);
            return NULL;
        }
    }
    self->status = code;
    PyObject *start_response = self->start_response;
    Py_INCREF(start_response);
    /* (status, headers, exc_info), exc_info None when not given. */
    PyObject *given[3] = {args[0], args[1], nargs > 2 ? args[2] : Py_None};
    PyObject *write = PyObject_Vectorcall(start_response, given, 3, NULL);
    Py_DECREF(start_response);
    if (write == NULL) {
        Py_DECREF(declared);
        return NULL;
    }
    Py_XSETREF(self->write, write);
    Py_XSETREF(self->declared, declared);
    /* A werkzeug request (Flask's) is in the environ until the
     * application returns: the rule it matched, if it is Flask's. */
    PyObject *environ = self->environ;
    if (environ == NULL) {
        PyErr_SetString(PyExc_AttributeError, "environ");
        return NULL;
    }
    Py_INCREF(environ);
    PyObject *request;
    if (PyDict_CheckExact(environ)) {
        request = PyDict_GetItemWithError(environ, key);
        Py_XINCREF(request);
    }
    else {
        request = PyObject_CallMethod(environ, "get", "O", key);
    }
    Py_DECREF(environ);
    if (request == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
    }
    else {
        PyObject *rule = request == Py_None
                             ? NULL
                             : PyObject_GetAttr(
                                   request,
                                   state->record_names[NAME_URL_RULE]);
        int missing = request != Py_None && rule == NULL;
        Py_DECREF(request);
        if (missing) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
                return NULL;
            }
            PyErr_Clear();
        }
        else if (rule != NULL) {
            if (rule == unknown) {
                Py_DECREF(rule);
            }
            else {
                Py_XSETREF(self->rule, rule);
            }
        }
    }
    return PyObject_GetAttr(op, state->record_names[NAME_COUNTING_WRITE]);
python:
    return call_own(op, state->record_names[NAME_START_PY], args, nargs,
                    kwnames);
}

/* complete(error, gone): the request recorded once; for a rule the
 * middleware knows (or none), in C. */
static PyObject *
wsgi_complete_with(State *state, WSGIRecordObject *self, PyObject *error,
                   PyObject *gone)
{
    if (self->record.finished) {
        Py_RETURN_NONE;
    }
    PyObject *op = (PyObject *)self;
    PyObject *rule = self->rule, *environ = self->environ;
    PyObject *unknown = state->record_names[NAME_UNKNOWN];
    PyObject *error_key = state->record_names[NAME_ERROR_KEY];
    PyObject *unmatched = state->record_names[NAME_UNMATCHED];
    if (rule == NULL || environ == NULL || self->middleware == NULL
        || !PyDict_CheckExact(environ) || unknown == NULL
        || error_key == NULL || unmatched == NULL || rule == unknown
        || self->record.method == NULL) {
        goto python;
    }
    PyObject *entry = NULL, *endpoint = Py_None, *handler = Py_None;
    if (rule != Py_None) {
        PyObject *rules = PyObject_GetAttr(self->middleware,
                                           state->record_names[NAME_RULES]);
        if (rules == NULL) {
            goto failed;
        }
        if (!PyDict_CheckExact(rules)) {
            Py_DECREF(rules);
            goto python;
        }
        PyObject *id = PyLong_FromVoidPtr(rule);
        if (id == NULL) {
            Py_DECREF(rules);
            return NULL;
        }
        entry = PyDict_GetItemWithError(rules, id);
        Py_XINCREF(entry);
        Py_DECREF(id);
        Py_DECREF(rules);
        if (entry == NULL) {
            if (PyErr_Occurred()) {
                goto failed;
            }
            goto python;
        }
        if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 3
            || PyTuple_GET_ITEM(entry, 0) != rule) {
            Py_DECREF(entry);
            goto python;
        }
        endpoint = PyTuple_GET_ITEM(entry, 1);
        handler = PyTuple_GET_ITEM(entry, 2);
    }
    /* From here on, done here. */
    Py_INCREF(error);
    if (error == Py_None) {
        /* The exception Flask's signal left, if any. */
        PyObject *left = PyDict_GetItemWithError(environ, error_key);
        if (left != NULL) {
            Py_INCREF(left);
            Py_SETREF(error, left);
        }
        else if (PyErr_Occurred()) {
            Py_DECREF(error);
            Py_XDECREF(entry);
            return NULL;
        }
    }
    int named = PyObject_IsTrue(endpoint);
    int head = named < 0 ? -1
                         : PyObject_RichCompareBool(self->record.method,
                                                    state->record_names
                                                        [NAME_HEAD_METHOD],
                                                    Py_EQ);
    PyObject *status = head < 0 ? NULL : PyLong_FromLong(self->status);
    PyObject *length = status == NULL ? NULL
                                      : PyLong_FromLongLong(
                                            head ? 0 : self->body_bytes);
    PyObject *result = NULL;
    if (length != NULL) {
        PyObject *finish[7] = {status, named ? endpoint : unmatched,
                               handler, length, error, gone, Py_None};
        result = record_finish_with(state, op, finish);
    }
    Py_XDECREF(status);
    Py_XDECREF(length);
    Py_DECREF(error);
    Py_XDECREF(entry);
    return result;
failed:
    /* The lookup failed: Python does it again and reports it. */
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        return NULL;
    }
    PyErr_Clear();
python: ;
    PyObject *call[2] = {error, gone};
    return call_own(op, state->record_names[NAME_COMPLETE_PY], call, 2,
                    NULL);
}

static PyObject *
wsgi_complete(PyObject *op, PyTypeObject *cls, PyObject *const *args,
              Py_ssize_t nargs, PyObject *kwnames)
{
    State *state = PyType_GetModuleState(cls);
    if (state == NULL) {
        return NULL;
    }
    PyObject *gone = Py_False;
    Py_ssize_t given = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    if (nargs == 2 && kwnames == NULL) {
        gone = args[1];
    }
    else if (nargs == 1 && given == 2) {
        int same = PyUnicode_Compare(PyTuple_GET_ITEM(kwnames, 0),
                                     state->record_names[NAME_GONE]);
        if (same == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (same != 0) {
            goto python;
        }
        gone = args[1];
    }
    else if (nargs != 1 || given != 1) {
        goto python;
    }
    return wsgi_complete_with(state, (WSGIRecordObject *)op, args[0], gone);
python:
    return call_own(op, state->record_names[NAME_COMPLETE_PY], args, nargs,
                    kwnames);
}

/* The request recorded with the exception being raised as its error (one
 * that is not an Exception, such as KeyboardInterrupt: recorded without
 * an error when *always*, else not recorded), which is raised again.
 * Returns NULL. */
static PyObject *
wsgi_complete_raising(State *state, WSGIRecordObject *self, int always)
{
    int exception = PyErr_ExceptionMatches(PyExc_Exception);
    if (!exception && !always) {
        return NULL;
    }
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL && value != NULL) {
        PyException_SetTraceback(value, traceback);
    }
    PyObject *done = wsgi_complete_with(
        state, self, exception && value ? value : Py_None, Py_False);
    if (done == NULL) {
        /* Recording failed in a way that is not reported: that error
         * goes through, with the first as its context. */
        if (value != NULL) {
            PyObject *t2, *v2, *tb2;
            PyErr_Fetch(&t2, &v2, &tb2);
            PyErr_NormalizeException(&t2, &v2, &tb2);
            if (v2 != NULL) {
                PyException_SetContext(v2, value); /* steals value */
                value = NULL;
            }
            PyErr_Restore(t2, v2, tb2);
        }
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(traceback);
        return NULL;
    }
    Py_DECREF(done);
    PyErr_Restore(type, value, traceback);
    return NULL;
}

/* After an exception in the iteration: when it is an Exception, the
 * request is recorded with it as its error; it is raised either way.
 * Returns NULL. */
static PyObject *
wsgi_failed(State *state, WSGIRecordObject *self)
{
    self->exhausted = 1;
    Py_CLEAR(self->iterator);
    return wsgi_complete_raising(state, self, 0);
}

/* Whether the body yielded reached the Content-Length declared: 1, 0 or
 * -1 on an error. */
static int
declared_reached(WSGIRecordObject *self)
{
    PyObject *declared = self->declared;
    if (PyLong_CheckExact(declared)) {
        int overflow;
        long long value = PyLong_AsLongLongAndOverflow(declared, &overflow);
        if (value == -1 && PyErr_Occurred()) {
            return -1;
        }
        return overflow ? overflow < 0 : self->body_bytes >= value;
    }
    Py_INCREF(declared);
    PyObject *count = PyLong_FromLongLong(self->body_bytes);
    int reached = count == NULL
                      ? -1
                      : PyObject_RichCompareBool(count, declared, Py_GE);
    Py_XDECREF(count);
    Py_DECREF(declared);
    return reached;
}

static PyObject *
wsgi_iter(PyObject *op)
{
    Py_INCREF(op);
    return op;
}

/* The response's next chunk: counted, and the request recorded when it is
 * the last (before the server has it). */
static PyObject *
wsgi_next(PyObject *op)
{
    WSGIRecordObject *self = (WSGIRecordObject *)op;
    if (self->exhausted) {
        return NULL;
    }
    State *state = state_of_type(Py_TYPE(op));
    if (state == NULL) {
        return NULL;
    }
    if (self->iterator == NULL) {
        if (self->result == NULL) {
            PyErr_SetString(PyExc_AttributeError, "result");
            return wsgi_failed(state, self);
        }
        PyObject *iterator = PyObject_GetIter(self->result);
        if (iterator == NULL) {
            return wsgi_failed(state, self);
        }
        Py_XSETREF(self->iterator, iterator);
    }
    PyObject *iterator = self->iterator;
    Py_INCREF(iterator);
    PyObject *chunk = Py_TYPE(iterator)->tp_iternext(iterator);
    Py_DECREF(iterator);
    if (chunk == NULL) {
        if (PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_StopIteration)) {
                return wsgi_failed(state, self);
            }
            PyErr_Clear();
        }
        self->exhausted = 1;
        Py_CLEAR(self->iterator);
        if (!self->record.finished) { /* no Content-Length reached */
            PyObject *done = wsgi_complete_with(state, self, Py_None,
                                                Py_False);
            if (done == NULL) {
                return NULL;
            }
            Py_DECREF(done);
        }
        return NULL;
    }
    Py_ssize_t size = PyObject_Size(chunk);
    if (size < 0) {
        Py_DECREF(chunk);
        return wsgi_failed(state, self);
    }
    self->body_bytes += size;
    if (self->declared != NULL && self->declared != Py_None
        && !self->record.finished) {
        int reached = declared_reached(self);
        if (reached > 0 && !self->record.finished) {
            /* The last chunk: recorded before the server has it. */
            PyObject *done = wsgi_complete_with(state, self, Py_None,
                                                Py_False);
            reached = done == NULL ? -1 : 0;
            Py_XDECREF(done);
        }
        if (reached < 0) {
            Py_DECREF(chunk);
            return wsgi_failed(state, self);
        }
    }
    return chunk;
}

/* close(): the application's iterable closed, after its last byte
 * (_close_py for a response not recorded yet). */
static PyObject *
wsgi_close(PyObject *op, PyTypeObject *cls, PyObject *const *args,
           Py_ssize_t nargs, PyObject *kwnames)
{
    State *state = PyType_GetModuleState(cls);
    if (state == NULL) {
        return NULL;
    }
    WSGIRecordObject *self = (WSGIRecordObject *)op;
    if (nargs != 0 || kwnames != NULL || !self->record.finished
        || self->result == NULL) {
        return call_own(op, state->record_names[NAME_CLOSE_PY], args, nargs,
                        kwnames);
    }
    PyObject *iterable = self->result;
    Py_INCREF(iterable);
    PyObject *close = PyObject_GetAttr(iterable,
                                       state->record_names[NAME_CLOSE]);
    Py_DECREF(iterable);
    if (close == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return NULL;
        }
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (close == Py_None) {
        Py_DECREF(close);
        Py_RETURN_NONE;
    }
    PyObject *result = PyObject_CallNoArgs(close);
    Py_DECREF(close);
    if (result == NULL) {
        return NULL;
    }
    Py_DECREF(result);
    Py_RETURN_NONE;
}

static int
wsgi_traverse(PyObject *op, visitproc visit, void *arg)
{
    WSGIRecordObject *self = (WSGIRecordObject *)op;
    Py_VISIT(self->middleware);
    Py_VISIT(self->environ);
    Py_VISIT(self->start_response);
    Py_VISIT(self->rule);
    Py_VISIT(self->result);
    Py_VISIT(self->write);
    Py_VISIT(self->declared);
    Py_VISIT(self->iterator);
    return record_traverse(op, visit, arg);
}

static int
wsgi_clear(PyObject *op)
{
    WSGIRecordObject *self = (WSGIRecordObject *)op;
    Py_CLEAR(self->middleware);
    Py_CLEAR(self->environ);
    Py_CLEAR(self->start_response);
    Py_CLEAR(self->rule);
    Py_CLEAR(self->result);
    Py_CLEAR(self->write);
    Py_CLEAR(self->declared);
    Py_CLEAR(self->iterator);
    return record_clear(op);
}

static void
wsgi_dealloc(PyObject *op)
{
    record_dealloc_with(op, wsgi_clear);
}

static PyMethodDef wsgi_methods[] = {
    {"start", (PyCFunction)(void (*)(void))wsgi_start, METHOD_FLAGS,
     "start($self, status, headers, exc_info=None, /)\n--\n\n"
     "The start_response the application is given."},
    {"complete", (PyCFunction)(void (*)(void))wsgi_complete, METHOD_FLAGS,
     "complete($self, error, gone=False)\n--\n\n"
     "Record the request, once, with what the middleware saw."},
    {"close", (PyCFunction)(void (*)(void))wsgi_close, METHOD_FLAGS,
     "close($self, /)\n--\n\n"
     "Close the application's iterable, and record the request."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef wsgi_members[] = {
    {"middleware", T_OBJECT_EX, offsetof(WSGIRecordObject, middleware), 0,
     NULL},
    {"environ", T_OBJECT_EX, offsetof(WSGIRecordObject, environ), 0, NULL},
    {"start_response", T_OBJECT_EX,
     offsetof(WSGIRecordObject, start_response), 0, NULL},
    {"rule", T_OBJECT_EX, offsetof(WSGIRecordObject, rule), 0, NULL},
    {"result", T_OBJECT_EX, offsetof(WSGIRecordObject, result), 0, NULL},
    {"write", T_OBJECT_EX, offsetof(WSGIRecordObject, write), 0, NULL},
    {"declared", T_OBJECT, offsetof(WSGIRecordObject, declared), 0, NULL},
    {"status", T_INT, offsetof(WSGIRecordObject, status), 0, NULL},
    {"body_bytes", T_LONGLONG, offsetof(WSGIRecordObject, body_bytes), 0,
     NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot wsgi_slots[] = {
    {Py_tp_doc, "The compiled base of the WSGI middleware's record."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, wsgi_dealloc},
    {Py_tp_finalize, record_finalize},
    {Py_tp_traverse, wsgi_traverse},
    {Py_tp_clear, wsgi_clear},
    {Py_tp_iter, wsgi_iter},
    {Py_tp_iternext, wsgi_next},
    {Py_tp_methods, wsgi_methods},
    {Py_tp_members, wsgi_members},
    {0, NULL},
};

static PyType_Spec wsgi_spec = {
    "sprockets_influxdb._speedups.WSGIRecordBase",
    sizeof(WSGIRecordObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    wsgi_slots,
};

/* ------------------------------------------------------------------------
 * The compiled base of sprockets_influxdb.wsgi.InfluxDBMiddleware: its
 * app and recorder, and its call for the common case (a dict environ not
 * seen by another such middleware, a recorder excluding no path), which
 * sets up the request's record as the Python method does; anything else
 * goes to that method (_call_py).
 * ------------------------------------------------------------------------
 */

typedef struct {
    PyObject_HEAD
    PyObject *app;
    PyObject *recorder;
} MiddlewareObject;

/* A new record of *type* (its class, without __init__) for a request of
 * *method*, its RequestRecord attributes set as RequestRecord.__init__
 * sets them: the record, or NULL. */
static PyObject *
new_record(State *state, PyTypeObject *type, PyObject *recorder,
           PyObject *method, int eager)
{
    PyObject *attributes[3] = {NULL, NULL, NULL};
    PyObject *started = NULL, *measurement = NULL, *record = NULL;
    static const int wanted[3] = {RECORDER_METHODS, RECORDER_DATABASE,
                                  RECORDER_MEASUREMENT};
    if (state->record_names[NAME_MEASUREMENT_CLASS] == NULL
        || state->record_names[NAME_OTHER_METHOD] == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "configure_requests() was not called");
        return NULL;
    }
    Py_INCREF(method);
    /* The names only for the measurement made here (eager). */
    for (int i = 0; i < (eager ? 3 : 1); i++) {
        attributes[i] = recorder_get(state, recorder, wanted[i]);
        if (attributes[i] == NULL) {
            goto done;
        }
    }
    int known = PyFrozenSet_CheckExact(attributes[0])
                    ? PySet_Contains(attributes[0], method)
                    : PySequence_Contains(attributes[0], method);
    if (known < 0) {
        goto done;
    }
    if (!known) {
        Py_SETREF(method, state->record_names[NAME_OTHER_METHOD]);
        Py_INCREF(method);
    }
    double now;
    if (monotonic_seconds(&now) < 0
        || (started = PyFloat_FromDouble(now)) == NULL) {
        goto done;
    }
    if (eager) {
        measurement = new_measurement(state, attributes[1], attributes[2]);
        if (measurement == NULL) {
            goto done;
        }
    }
    record = type->tp_alloc(type, 0);
    if (record == NULL) {
        goto done;
    }
    RecordObject *self = (RecordObject *)record;
    Py_INCREF(recorder);
    self->recorder = recorder;
    self->method = method;
    method = NULL;
    self->started = started;
    started = NULL;
    self->measurement = measurement;
    measurement = NULL;
    self->finished = 0;
done:
    for (int i = 0; i < 3; i++) {
        Py_XDECREF(attributes[i]);
    }
    Py_XDECREF(method);
    Py_XDECREF(started);
    Py_XDECREF(measurement);
    return record;
}

/* Set up a new record of a WSGI request as InfluxDBMiddleware._call_py
 * does: the record, or NULL. */
static PyObject *
middleware_record(State *state, PyObject *op, PyObject *recorder,
                  PyObject *environ, PyObject *start_response)
{
    PyObject *method = PyDict_GetItemWithError(
        environ, state->record_names[NAME_REQUEST_METHOD]);
    if (method == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        method = state->record_names[NAME_GET];
    }
    PyObject *record = new_record(
        state, (PyTypeObject *)state->record_names[NAME_RECORD_CLASS],
        recorder, method, 1);
    if (record == NULL) {
        return NULL;
    }
    WSGIRecordObject *self = (WSGIRecordObject *)record;
    if (PyDict_SetItem(environ, state->record_names[NAME_ENVIRON_KEY],
                       self->record.measurement) < 0) {
        self->record.finished = 1; /* nothing to record when released */
        Py_DECREF(record);
        return NULL;
    }
    Py_INCREF(op);
    self->middleware = op;
    Py_INCREF(environ);
    self->environ = environ;
    Py_INCREF(start_response);
    self->start_response = start_response;
    self->status = 500;
    self->body_bytes = 0;
    Py_INCREF(Py_None);
    self->declared = Py_None;
    Py_INCREF(state->record_names[NAME_UNKNOWN]);
    self->rule = state->record_names[NAME_UNKNOWN];
    return record;
}

static PyObject *
middleware_call(PyObject *op, PyObject *args, PyObject *kwargs)
{
    State *state = state_of_type(Py_TYPE(op));
    if (state == NULL) {
        return NULL;
    }
    MiddlewareObject *self = (MiddlewareObject *)op;
    PyObject *recorder = self->recorder, *app = self->app;
    if ((kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)
        || PyTuple_GET_SIZE(args) != 2 || recorder == NULL
        || recorder == Py_None || app == NULL
        || state->record_names[NAME_RECORD_CLASS] == NULL
        || state->record_names[NAME_UNMATCHED] == NULL) {
        goto python;
    }
    PyObject *environ = PyTuple_GET_ITEM(args, 0);
    PyObject *start_response = PyTuple_GET_ITEM(args, 1);
    if (!PyDict_CheckExact(environ)) {
        goto python;
    }
    /* Recorded by another one further out, or paths excluded: Python. */
    int nested = PyDict_Contains(environ,
                                 state->record_names[NAME_ENVIRON_KEY]);
    if (nested != 0) {
        if (nested < 0) {
            return NULL;
        }
        goto python;
    }
    PyObject *excluded = recorder_get(state, recorder, RECORDER_EXCLUDED);
    int excluding = excluded == NULL ? -1 : PyObject_IsTrue(excluded);
    Py_XDECREF(excluded);
    if (excluding != 0) {
        if (excluding < 0) {
            return NULL;
        }
        goto python;
    }
    Py_INCREF(recorder);
    Py_INCREF(app);
    PyObject *record = middleware_record(state, op, recorder, environ,
                                         start_response);
    Py_DECREF(recorder);
    if (record == NULL) {
        Py_DECREF(app);
        return NULL;
    }
    WSGIRecordObject *request = (WSGIRecordObject *)record;
    PyObject *start = PyObject_GetAttr(record,
                                       state->record_names[NAME_START]);
    PyObject *result = NULL;
    if (start != NULL) {
        PyObject *call[2] = {environ, start};
        result = PyObject_Vectorcall(app, call, 2, NULL);
        Py_DECREF(start);
    }
    Py_DECREF(app);
    if (result == NULL) {
        wsgi_complete_raising(state, request, 1);
        Py_DECREF(record);
        return NULL;
    }
    /* A response built on the server's file_wrapper: the server sends
     * such a file its own way (sendfile), so it is handed over as it
     * is, recorded now (_file_response). */
    PyObject *wrapper = PyDict_GetItemWithError(
        environ, state->record_names[NAME_FILE_WRAPPER]);
    if (wrapper == NULL && PyErr_Occurred()) {
        Py_DECREF(result);
        Py_DECREF(record);
        return NULL;
    }
    if (wrapper != NULL && wrapper != Py_None && PyType_Check(wrapper)) {
        Py_INCREF(wrapper);
        int wrapped = PyObject_IsInstance(result, wrapper);
        Py_DECREF(wrapper);
        if (wrapped != 0) {
            PyObject *given = NULL;
            if (wrapped > 0) {
                PyObject *call[3] = {op, record, result};
                given = PyObject_VectorcallMethod(
                    state->record_names[NAME_FILE_RESPONSE], call,
                    3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            }
            Py_DECREF(result);
            Py_DECREF(record);
            return given;
        }
    }
    Py_XSETREF(request->result, result);
    return record;
python: ;
    PyObject *method = PyObject_GetAttr(op, state->record_names[NAME_CALL_PY]);
    if (method == NULL) {
        return NULL;
    }
    PyObject *given = PyObject_Call(method, args, kwargs);
    Py_DECREF(method);
    return given;
}

static int
middleware_traverse(PyObject *op, visitproc visit, void *arg)
{
    MiddlewareObject *self = (MiddlewareObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->app);
    Py_VISIT(self->recorder);
    return 0;
}

static int
middleware_clear(PyObject *op)
{
    MiddlewareObject *self = (MiddlewareObject *)op;
    Py_CLEAR(self->app);
    Py_CLEAR(self->recorder);
    return 0;
}

static void
middleware_dealloc(PyObject *op)
{
    PyTypeObject *type = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    middleware_clear(op);
    type->tp_free(op);
    Py_DECREF(type);
}

static PyMemberDef middleware_members[] = {
    {"app", T_OBJECT_EX, offsetof(MiddlewareObject, app), 0, NULL},
    {"recorder", T_OBJECT, offsetof(MiddlewareObject, recorder), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot middleware_slots[] = {
    {Py_tp_doc, "The compiled base of the WSGI middleware."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, middleware_dealloc},
    {Py_tp_traverse, middleware_traverse},
    {Py_tp_clear, middleware_clear},
    {Py_tp_call, middleware_call},
    {Py_tp_members, middleware_members},
    {0, NULL},
};

static PyType_Spec middleware_spec = {
    "sprockets_influxdb._speedups.WSGIMiddlewareBase",
    sizeof(MiddlewareObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    middleware_slots,
};

/* configure_wsgi(unknown, error_key, request_key, environ_key,
 * record_class): the WSGI middleware's rule not known yet; its environ
 * keys of Flask's uncaught exception, of werkzeug's request and of the
 * measurement; the class of its records (a subclass of WSGIRecordBase). */
static PyObject *
configure_wsgi(PyObject *module, PyObject *args)
{
    PyObject *given[5];
    if (!PyArg_ParseTuple(args, "OUUUO!", &given[0], &given[1], &given[2],
                          &given[3], &PyType_Type, &given[4])) {
        return NULL;
    }
    State *state = get_state(module);
    PyObject *base = PyObject_GetAttrString(module, "WSGIRecordBase");
    if (base == NULL) {
        return NULL;
    }
    int records = PyType_IsSubtype((PyTypeObject *)given[4],
                                   (PyTypeObject *)base);
    Py_DECREF(base);
    if (!records) {
        PyErr_SetString(PyExc_TypeError,
                        "configure_wsgi() needs a WSGIRecordBase subclass");
        return NULL;
    }
    static const int names[5] = {NAME_UNKNOWN, NAME_ERROR_KEY,
                                 NAME_REQUEST_KEY, NAME_ENVIRON_KEY,
                                 NAME_RECORD_CLASS};
    for (int i = 0; i < 5; i++) {
        Py_INCREF(given[i]);
        Py_XSETREF(state->record_names[names[i]], given[i]);
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------
 * The compiled bases of sprockets_influxdb.asgi's _Responder (a request's
 * record) and InfluxDBMiddleware.  The middleware's _begin sets up the
 * record of an HTTP request as _begin_py does; the record's send hands
 * the last of a response under 500 to the server, recording the request
 * first, as _send_py does; its complete records a request whose route
 * the middleware has met before.  Anything else goes to those Python
 * methods.
 * ------------------------------------------------------------------------
 */

typedef struct {
    RecordObject record;
    PyObject *middleware;
    PyObject *scope;
    PyObject *downstream_receive;
    PyObject *downstream_send;
    PyObject *path;
    PyObject *root_path;
    PyObject *root;
    PyObject *status;
    PyObject *ended;
    long long body_bytes;
    char disconnected;
} ASGIRecordObject;

/* scope[key] of a dict, a new reference; NULL (no error) when missing. */
static PyObject *
scope_get(PyObject *scope, PyObject *key)
{
    PyObject *value = PyDict_GetItemWithError(scope, key);
    Py_XINCREF(value);
    return value;
}

/* complete(error): the request recorded once; for a route the middleware
 * has met before, in C. */
static PyObject *
asgi_complete_with(State *state, ASGIRecordObject *self, PyObject *error)
{
    if (self->record.finished) {
        Py_RETURN_NONE;
    }
    PyObject *op = (PyObject *)self;
    PyObject *scope = self->scope, *status = self->status;
    PyObject *unmatched = state->record_names[NAME_UNMATCHED];
    if (scope == NULL || !PyDict_CheckExact(scope) || status == NULL
        || !PyLong_CheckExact(status) || self->middleware == NULL
        || self->root == NULL || self->root_path == NULL
        || !PyUnicode_CheckExact(self->root_path) || self->ended == NULL
        || self->record.method == NULL || unmatched == NULL
        || state->record_names[NAME_ASGI_UNKNOWN] == NULL) {
        goto python;
    }
    int overflow;
    long code = PyLong_AsLongAndOverflow(status, &overflow);
    if (code == 405 || overflow) { /* 405: no route served it */
        goto python;
    }
    PyObject *middleware = self->middleware;
    Py_INCREF(middleware);
    PyObject *root = self->root;
    Py_INCREF(root);
    /* (Python code may run from here on: what is read of the record is
     * read again where it is used.) */
    int truth = PyObject_IsTrue(root);
    if (truth == 0) {
        Py_SETREF(root, PyObject_GetAttr(middleware,
                                         state->record_names[NAME_OWNER]));
        truth = root == NULL ? -1 : 1;
    }
    if (truth < 0 || root == state->record_names[NAME_ASGI_UNKNOWN]) {
        Py_XDECREF(root);
        Py_DECREF(middleware);
        if (truth < 0) {
            if (!PyErr_ExceptionMatches(PyExc_Exception)) {
                return NULL;
            }
            PyErr_Clear(); /* Python does it again, and reports it */
        }
        goto python;
    }
    PyObject *route = NULL, *handler = NULL, *fastapi = NULL;
    PyObject *owner = NULL, *key = NULL, *routes = NULL, *entry = NULL;
    PyObject *method = NULL, *length = NULL, *result = NULL;
    int found = 0, head = 0, named = 0;
    Py_INCREF(scope);
    route = scope_get(scope, state->record_names[NAME_ROUTE]);
    if (route == NULL || route == Py_None) {
        goto lookup_done;
    }
    handler = scope_get(scope, state->record_names[NAME_ENDPOINT_KEY]);
    if (handler == NULL) {
        if (PyErr_Occurred()) {
            goto lookup_done;
        }
        handler = Py_None;
        Py_INCREF(handler);
    }
    fastapi = scope_get(scope, state->record_names[NAME_FASTAPI]);
    if (fastapi != NULL && PyDict_CheckExact(fastapi)) {
        owner = scope_get(fastapi, state->record_names[NAME_ROUTE_CONTEXT]);
    }
    if (PyErr_Occurred()) {
        goto lookup_done;
    }
    if (owner == NULL || owner == Py_None) {
        Py_XSETREF(owner, route);
        Py_INCREF(owner);
    }
    PyObject *root_path = self->root_path;
    if (root_path == NULL || !PyUnicode_CheckExact(root_path)) {
        goto lookup_done;
    }
    PyObject *root_id = PyLong_FromVoidPtr(root);
    PyObject *owner_id = root_id ? PyLong_FromVoidPtr(owner) : NULL;
    if (owner_id != NULL) {
        key = PyTuple_Pack(3, root_id, owner_id, root_path);
    }
    Py_XDECREF(root_id);
    Py_XDECREF(owner_id);
    if (key == NULL) {
        goto lookup_done;
    }
    routes = PyObject_GetAttr(middleware, state->record_names[NAME_ROUTES]);
    if (routes == NULL || !PyDict_CheckExact(routes)) {
        goto lookup_done;
    }
    entry = scope_get(routes, key);
    if (entry != NULL && PyTuple_CheckExact(entry)
        && PyTuple_GET_SIZE(entry) == 4 && PyTuple_GET_ITEM(entry, 0) == owner
        && PyTuple_GET_ITEM(entry, 2) == handler) {
        found = 1;
    }
    if (found) {
        method = scope_get(scope, state->record_names[NAME_METHOD_KEY]);
        if (method != NULL) {
            head = PyObject_RichCompareBool(
                method, state->record_names[NAME_HEAD_METHOD], Py_EQ);
        }
        if (head >= 0 && !PyErr_Occurred()) {
            named = PyObject_IsTrue(PyTuple_GET_ITEM(entry, 1));
        }
    }
lookup_done:
    if (PyErr_Occurred()) {
        /* The lookup failed: Python does it again, and reports it. */
        found = PyErr_ExceptionMatches(PyExc_Exception) ? 0 : -1;
        if (found == 0) {
            PyErr_Clear();
        }
    }
    status = self->status;
    PyObject *ended = self->ended;
    if (found > 0 && status != NULL && PyLong_CheckExact(status)
        && ended != NULL) {
        length = PyLong_FromLongLong(head ? 0 : self->body_bytes);
        if (length != NULL) {
            int gone = self->disconnected;
            PyObject *finish[7] = {
                status,
                named ? PyTuple_GET_ITEM(entry, 1) : unmatched,
                PyTuple_GET_ITEM(entry, 3),
                length,
                gone ? Py_None : error,
                gone ? Py_True : Py_False,
                ended};
            Py_INCREF(status);
            Py_INCREF(ended);
            result = record_finish_with(state, op, finish);
            Py_DECREF(ended);
            Py_DECREF(status);
        }
        if (result == NULL) {
            found = -1;
        }
    }
    else if (found > 0) {
        found = 0;
    }
    Py_XDECREF(route);
    Py_XDECREF(handler);
    Py_XDECREF(fastapi);
    Py_XDECREF(owner);
    Py_XDECREF(key);
    Py_XDECREF(routes);
    Py_XDECREF(entry);
    Py_XDECREF(method);
    Py_XDECREF(length);
    Py_DECREF(scope);
    Py_DECREF(root);
    Py_DECREF(middleware);
    if (found > 0) {
        return result;
    }
    if (found < 0) {
        return NULL;
    }
python: ;
    return call_own(op, state->record_names[NAME_COMPLETE_PY], &error, 1,
                    NULL);
}

static PyObject *
asgi_complete(PyObject *op, PyTypeObject *cls, PyObject *const *args,
              Py_ssize_t nargs, PyObject *kwnames)
{
    State *state = PyType_GetModuleState(cls);
    if (state == NULL) {
        return NULL;
    }
    if (nargs != 1 || kwnames != NULL) {
        return call_own(op, state->record_names[NAME_COMPLETE_PY], args,
                        nargs, kwnames);
    }
    return asgi_complete_with(state, (ASGIRecordObject *)op, args[0]);
}

#if PY_VERSION_HEX >= 0x030A0000
/* What send returns for the start of a response: awaiting it awaits the
 * server's send, as _send does, noting that the client went away when the
 * server raises OSError (ASGI 2.4), without a coroutine of its own. */
typedef struct {
    PyObject_HEAD
    PyObject *record;   /* the ASGIRecordBase instance */
    PyObject *iterator; /* of the server's send's awaitable */
} SendingObject;

static void
sending_failed(SendingObject *self)
{
    if (PyErr_ExceptionMatches(PyExc_OSError)) {
        ((ASGIRecordObject *)self->record)->disconnected = 1;
    }
}

static PySendResult
sending_am_send(PyObject *op, PyObject *value, PyObject **result)
{
    SendingObject *self = (SendingObject *)op;
    PySendResult done = PyIter_Send(self->iterator, value, result);
    if (done == PYGEN_ERROR) {
        sending_failed(self);
    }
    return done;
}

/* The result of send() or __next__(): the next value, or NULL with
 * StopIteration once done (__next__ may leave it out for None), or an
 * error. */
static PyObject *
sending_step(PyObject *op, PyObject *value, int method)
{
    PyObject *result = NULL;
    PySendResult done = sending_am_send(op, value, &result);
    if (done == PYGEN_NEXT) {
        return result;
    }
    if (done == PYGEN_RETURN) {
        if (result == Py_None && method) {
            PyErr_SetNone(PyExc_StopIteration);
        }
        else if (result != Py_None) {
            PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration,
                                                 result);
            if (stop != NULL) {
                PyErr_SetObject(PyExc_StopIteration, stop);
                Py_DECREF(stop);
            }
        }
        Py_DECREF(result);
    }
    return NULL;
}

static PyObject *
sending_next(PyObject *op)
{
    return sending_step(op, Py_None, 0);
}

static PyObject *
sending_send(PyObject *op, PyObject *value)
{
    return sending_step(op, value, 1);
}

/* throw() and close(): the coroutine's (the server's send's, or the one
 * that awaits any other awaitable), called with *args*. */
static PyObject *
sending_forward(PyObject *op, const char *name, PyObject *args)
{
    SendingObject *self = (SendingObject *)op;
    PyObject *method = PyObject_GetAttrString(self->iterator, name);
    PyObject *result = method == NULL ? NULL
                                      : PyObject_Call(method, args, NULL);
    Py_XDECREF(method);
    if (result == NULL) {
        sending_failed(self);
    }
    return result;
}

static PyObject *
sending_throw(PyObject *op, PyObject *args)
{
    return sending_forward(op, "throw", args);
}

static PyObject *
sending_close(PyObject *op, PyObject *unused)
{
    (void)unused;
    PyObject *none = PyTuple_New(0);
    PyObject *result = none == NULL ? NULL
                                    : sending_forward(op, "close", none);
    Py_XDECREF(none);
    return result;
}

static PyObject *
sending_await(PyObject *op)
{
    Py_INCREF(op);
    return op;
}

static int
sending_traverse(PyObject *op, visitproc visit, void *arg)
{
    SendingObject *self = (SendingObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->record);
    Py_VISIT(self->iterator);
    return 0;
}

static int
sending_clear(PyObject *op)
{
    SendingObject *self = (SendingObject *)op;
    Py_CLEAR(self->record);
    Py_CLEAR(self->iterator);
    return 0;
}

static void
sending_dealloc(PyObject *op)
{
    PyTypeObject *type = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    sending_clear(op);
    type->tp_free(op);
    Py_DECREF(type);
}

static PyMethodDef sending_methods[] = {
    {"send", sending_send, METH_O, NULL},
    {"throw", sending_throw, METH_VARARGS, NULL},
    {"close", sending_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot sending_slots[] = {
    {Py_tp_doc, "The start of a response on its way to the server."},
    {Py_tp_dealloc, sending_dealloc},
    {Py_tp_traverse, sending_traverse},
    {Py_tp_clear, sending_clear},
    {Py_tp_iter, sending_await},
    {Py_tp_iternext, sending_next},
    {Py_tp_methods, sending_methods},
    {Py_am_await, sending_await},
    {Py_am_send, sending_am_send},
    {0, NULL},
};

static PyType_Spec sending_spec = {
    "sprockets_influxdb._speedups.Sending",
    sizeof(SendingObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC
        | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    sending_slots,
};

/* The start of a response: its status noted and the server's send called,
 * awaited through a Sending (see above).  NULL with an error, or
 * Py_NotImplemented when it is not that case (nothing was done). */
static PyObject *
asgi_send_start(State *state, ASGIRecordObject *self, PyObject *message)
{
    PyObject *status = PyDict_GetItemWithError(
        message, state->record_names[NAME_STATUS]);
    if (status == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NOTIMPLEMENTED;
    }
    PyObject *send = self->downstream_send;
    if (!PyLong_CheckExact(status) || send == NULL
        || state->sending_type == NULL
        || state->record_names[NAME_ASGI_AWAITING] == NULL) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    Py_INCREF(status);
    Py_XSETREF(self->status, status);
    Py_INCREF(send);
    Py_INCREF(message);
    PyObject *awaitable = PyObject_Vectorcall(send, &message, 1, NULL);
    Py_DECREF(message);
    Py_DECREF(send);
    if (awaitable == NULL) {
        if (PyErr_ExceptionMatches(PyExc_OSError)) {
            self->disconnected = 1;
        }
        return NULL;
    }
    PyObject *iterator = awaitable;
    if (!PyCoro_CheckExact(awaitable)) {
        /* A future, a generator-based coroutine...: a coroutine awaits it
         * (_awaiting, set by configure_asgi), as Python does. */
        iterator = PyObject_CallOneArg(
            state->record_names[NAME_ASGI_AWAITING], awaitable);
        Py_DECREF(awaitable);
        if (iterator == NULL) {
            return NULL;
        }
    }
    PyTypeObject *type = (PyTypeObject *)state->sending_type;
    SendingObject *sending = PyObject_GC_New(SendingObject, type);
    if (sending == NULL) {
        Py_DECREF(iterator);
        return NULL;
    }
    Py_INCREF(self);
    sending->record = (PyObject *)self;
    sending->iterator = iterator;
    PyObject_GC_Track(sending);
    return (PyObject *)sending;
}
#endif

/* send(message): the send the application is given.  The last of a
 * response under 500 is recorded and handed to the server (its send's
 * awaitable returned); so is the start of a response (its status noted);
 * the rest goes to _send_py. */
static PyObject *
asgi_send(PyObject *op, PyTypeObject *cls, PyObject *const *args,
          Py_ssize_t nargs, PyObject *kwnames)
{
    State *state = PyType_GetModuleState(cls);
    if (state == NULL) {
        return NULL;
    }
    ASGIRecordObject *self = (ASGIRecordObject *)op;
    if (nargs != 1 || kwnames != NULL || !PyDict_CheckExact(args[0])
        || self->downstream_send == NULL) {
        goto python;
    }
    PyObject *message = args[0];
    PyObject *kind = PyDict_GetItemWithError(message,
                                             state->record_names[NAME_TYPE]);
    if (kind == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        goto python;
    }
    if (!PyUnicode_CheckExact(kind)) {
        goto python;
    }
    if (PyUnicode_Compare(kind, state->record_names[NAME_BODY_TYPE]) != 0) {
#if PY_VERSION_HEX >= 0x030A0000
        if (PyUnicode_Compare(kind, state->record_names[NAME_START_TYPE])
            == 0) {
            PyObject *sending = asgi_send_start(state, self, args[0]);
            if (sending != Py_NotImplemented) {
                return sending;
            }
            Py_DECREF(sending);
        }
#endif
        goto python;
    }
    PyObject *more = PyDict_GetItemWithError(
        message, state->record_names[NAME_MORE_BODY]);
    if (more == NULL && PyErr_Occurred()) {
        return NULL;
    }
    int streaming = more == NULL ? 0 : PyObject_IsTrue(more);
    if (streaming != 0) {
        if (streaming < 0) {
            return NULL;
        }
        goto python;
    }
    /* (Read again: what more_body's truth ran may have changed it.) */
    PyObject *status = self->status;
    if (status == NULL || !PyLong_CheckExact(status)) {
        goto python;
    }
    int overflow;
    long code = PyLong_AsLongAndOverflow(status, &overflow);
    if (overflow || code >= 500) {
        goto python;
    }
    PyObject *body = PyDict_GetItemWithError(message,
                                             state->record_names[NAME_BODY]);
    Py_ssize_t size = 0;
    if (body != NULL) {
        Py_INCREF(body);
        size = PyObject_Size(body);
        Py_DECREF(body);
        if (size < 0) {
            return NULL;
        }
    }
    else if (PyErr_Occurred()) {
        return NULL;
    }
    double now;
    PyObject *ended = monotonic_seconds(&now) < 0 ? NULL
                                                  : PyFloat_FromDouble(now);
    if (ended == NULL) {
        return NULL;
    }
    Py_INCREF(message);
    self->body_bytes += size;
    Py_XSETREF(self->ended, ended);
    PyObject *done = asgi_complete_with(state, self, Py_None);
    if (done == NULL) {
        Py_DECREF(message);
        return NULL;
    }
    Py_DECREF(done);
    PyObject *send = self->downstream_send;
    if (send == NULL) {
        Py_DECREF(message);
        PyErr_SetString(PyExc_AttributeError, "downstream_send");
        return NULL;
    }
    Py_INCREF(send);
    PyObject *awaitable = PyObject_Vectorcall(send, &message, 1, NULL);
    Py_DECREF(send);
    Py_DECREF(message);
    return awaitable;
python:
    return call_own(op, state->record_names[NAME_SEND_PY], args, nargs,
                    kwnames);
}

static int
asgi_traverse(PyObject *op, visitproc visit, void *arg)
{
    ASGIRecordObject *self = (ASGIRecordObject *)op;
    Py_VISIT(self->middleware);
    Py_VISIT(self->scope);
    Py_VISIT(self->downstream_receive);
    Py_VISIT(self->downstream_send);
    Py_VISIT(self->path);
    Py_VISIT(self->root_path);
    Py_VISIT(self->root);
    Py_VISIT(self->status);
    Py_VISIT(self->ended);
    return record_traverse(op, visit, arg);
}

static int
asgi_clear(PyObject *op)
{
    ASGIRecordObject *self = (ASGIRecordObject *)op;
    Py_CLEAR(self->middleware);
    Py_CLEAR(self->scope);
    Py_CLEAR(self->downstream_receive);
    Py_CLEAR(self->downstream_send);
    Py_CLEAR(self->path);
    Py_CLEAR(self->root_path);
    Py_CLEAR(self->root);
    Py_CLEAR(self->status);
    Py_CLEAR(self->ended);
    return record_clear(op);
}

static void
asgi_dealloc(PyObject *op)
{
    record_dealloc_with(op, asgi_clear);
}

static PyMethodDef asgi_methods[] = {
    {"send", (PyCFunction)(void (*)(void))asgi_send, METHOD_FLAGS,
     "send($self, message, /)\n--\n\n"
     "The send the application is given."},
    {"complete", (PyCFunction)(void (*)(void))asgi_complete, METHOD_FLAGS,
     "complete($self, error, /)\n--\n\n"
     "Record the request, once, with what the middleware saw."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef asgi_members[] = {
    {"middleware", T_OBJECT_EX, offsetof(ASGIRecordObject, middleware), 0,
     NULL},
    {"scope", T_OBJECT_EX, offsetof(ASGIRecordObject, scope), 0, NULL},
    {"downstream_receive", T_OBJECT_EX,
     offsetof(ASGIRecordObject, downstream_receive), 0, NULL},
    {"downstream_send", T_OBJECT_EX,
     offsetof(ASGIRecordObject, downstream_send), 0, NULL},
    {"path", T_OBJECT_EX, offsetof(ASGIRecordObject, path), 0, NULL},
    {"root_path", T_OBJECT_EX, offsetof(ASGIRecordObject, root_path), 0,
     NULL},
    {"root", T_OBJECT_EX, offsetof(ASGIRecordObject, root), 0, NULL},
    {"status", T_OBJECT_EX, offsetof(ASGIRecordObject, status), 0, NULL},
    {"ended", T_OBJECT_EX, offsetof(ASGIRecordObject, ended), 0, NULL},
    {"body_bytes", T_LONGLONG, offsetof(ASGIRecordObject, body_bytes), 0,
     NULL},
    {"disconnected", T_BOOL, offsetof(ASGIRecordObject, disconnected), 0,
     NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot asgi_slots[] = {
    {Py_tp_doc, "The compiled base of the ASGI middleware's record."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, asgi_dealloc},
    {Py_tp_finalize, record_finalize},
    {Py_tp_traverse, asgi_traverse},
    {Py_tp_clear, asgi_clear},
    {Py_tp_methods, asgi_methods},
    {Py_tp_members, asgi_members},
    {0, NULL},
};

static PyType_Spec asgi_spec = {
    "sprockets_influxdb._speedups.ASGIRecordBase",
    sizeof(ASGIRecordObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    asgi_slots,
};

/* _begin(scope, receive, send): the record of an HTTP request to record,
 * set up as _begin_py sets it up; what _begin_py returns for anything
 * else (None, or the record of a request it records). */
static PyObject *
asgi_begin(PyObject *op, PyTypeObject *cls, PyObject *const *args,
           Py_ssize_t nargs, PyObject *kwnames)
{
    State *state = PyType_GetModuleState(cls);
    if (state == NULL) {
        return NULL;
    }
    MiddlewareObject *self = (MiddlewareObject *)op;
    PyObject *recorder = self->recorder;
    PyTypeObject *type
        = (PyTypeObject *)state->record_names[NAME_ASGI_RECORD_CLASS];
    PyObject *recording = state->record_names[NAME_RECORDING];
    if (nargs != 3 || kwnames != NULL || !PyDict_CheckExact(args[0])
        || recorder == NULL || recorder == Py_None || type == NULL
        || recording == NULL) {
        goto python;
    }
    PyObject *scope = args[0];
    PyObject *kind = PyDict_GetItemWithError(scope,
                                             state->record_names[NAME_TYPE]);
    if (kind == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        goto python;
    }
    if (!PyUnicode_CheckExact(kind)
        || PyUnicode_Compare(kind, state->record_names[NAME_HTTP]) != 0) {
        goto python;
    }
    int nested = PyDict_Contains(scope, recording);
    if (nested != 0) {
        if (nested < 0) {
            return NULL;
        }
        goto python;
    }
    PyObject *excluded = recorder_get(state, recorder, RECORDER_EXCLUDED);
    int excluding = excluded == NULL ? -1 : PyObject_IsTrue(excluded);
    Py_XDECREF(excluded);
    if (excluding != 0) {
        if (excluding < 0) {
            return NULL;
        }
        goto python;
    }
    PyObject *method = NULL, *path = NULL, *root_path = NULL, *root = NULL;
    PyObject *given = NULL, *record = NULL;
    Py_INCREF(scope);
    Py_INCREF(recorder);
    method = scope_get(scope, state->record_names[NAME_METHOD_KEY]);
    path = method ? scope_get(scope, state->record_names[NAME_PATH]) : NULL;
    if (path == NULL) {
        if (!PyErr_Occurred()) { /* not an HTTP scope as Python wants it */
            Py_XDECREF(method);
            Py_DECREF(recorder);
            Py_DECREF(scope);
            goto python;
        }
        goto done;
    }
    root_path = scope_get(scope, state->record_names[NAME_ROOT_PATH]);
    if (root_path == NULL) {
        if (PyErr_Occurred()) {
            goto done;
        }
        root_path = state->record_names[NAME_EMPTY];
        Py_INCREF(root_path);
    }
    root = scope_get(scope, state->record_names[NAME_APP]);
    if (root == NULL) {
        if (PyErr_Occurred()) {
            goto done;
        }
        root = Py_None;
        Py_INCREF(root);
    }
    record = new_record(state, type, recorder, method, 1);
    if (record == NULL) {
        goto done;
    }
    ASGIRecordObject *request = (ASGIRecordObject *)record;
    Py_INCREF(op);
    request->middleware = op;
    Py_INCREF(scope);
    request->scope = scope;
    Py_INCREF(args[1]);
    request->downstream_receive = args[1];
    Py_INCREF(args[2]);
    request->downstream_send = args[2];
    request->path = path;
    path = NULL;
    request->root_path = root_path;
    root_path = NULL;
    request->root = root;
    root = NULL;
    request->status = PyLong_FromLong(500);
    Py_INCREF(Py_None);
    request->ended = Py_None;
    request->body_bytes = 0;
    request->disconnected = 0;
    if (request->status == NULL
        || PyDict_SetItem(scope, recording, Py_True) < 0) {
        goto failed;
    }
    /* The handlers find the measurement in the scope's state. */
    PyObject *kept = scope_get(scope, state->record_names[NAME_STATE]);
    if (kept == NULL && PyErr_Occurred()) {
        goto failed;
    }
    int stored = 0;
    if (kept == NULL || kept == Py_None) {
        PyObject *fresh = PyDict_New();
        stored = fresh == NULL
                     ? -1
                     : PyDict_SetItem(fresh, state->record_names[NAME_INFLUXDB],
                                      request->record.measurement);
        if (stored == 0) {
            stored = PyDict_SetItem(scope, state->record_names[NAME_STATE],
                                    fresh);
        }
        Py_XDECREF(fresh);
    }
    else if (PyDict_Check(kept)) {
        stored = PyObject_SetItem(kept, state->record_names[NAME_INFLUXDB],
                                  request->record.measurement);
    }
    Py_XDECREF(kept);
    if (stored < 0) {
        goto failed;
    }
    given = record;
    record = NULL;
    goto done;
failed:
    request->record.finished = 1; /* nothing to record when released */
done:
    Py_XDECREF(record);
    Py_XDECREF(method);
    Py_XDECREF(path);
    Py_XDECREF(root_path);
    Py_XDECREF(root);
    Py_DECREF(recorder);
    Py_DECREF(scope);
    return given;
python:
    return call_own(op, state->record_names[NAME_BEGIN_PY], args, nargs,
                    kwnames);
}

static PyMethodDef asgi_middleware_methods[] = {
    {"_begin", (PyCFunction)(void (*)(void))asgi_begin, METHOD_FLAGS,
     "_begin($self, scope, receive, send, /)\n--\n\n"
     "The record of an HTTP request to record, set up; else None."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot asgi_middleware_slots[] = {
    {Py_tp_doc, "The compiled base of the ASGI middleware."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, middleware_dealloc},
    {Py_tp_traverse, middleware_traverse},
    {Py_tp_clear, middleware_clear},
    {Py_tp_methods, asgi_middleware_methods},
    {Py_tp_members, middleware_members},
    {0, NULL},
};

static PyType_Spec asgi_middleware_spec = {
    "sprockets_influxdb._speedups.ASGIMiddlewareBase",
    sizeof(MiddlewareObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    asgi_middleware_slots,
};

/* configure_asgi(recording, unknown, record_class): the ASGI middleware's
 * scope key of a request being recorded, its owner of routes not looked
 * for yet, and the class of its records (a subclass of ASGIRecordBase). */
static PyObject *
configure_asgi(PyObject *module, PyObject *args)
{
    PyObject *given[4];
    if (!PyArg_ParseTuple(args, "UOO!O", &given[0], &given[1], &PyType_Type,
                          &given[2], &given[3])) {
        return NULL;
    }
    if (!PyCallable_Check(given[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "configure_asgi() needs a callable to await with");
        return NULL;
    }
    State *state = get_state(module);
    PyObject *base = PyObject_GetAttrString(module, "ASGIRecordBase");
    if (base == NULL) {
        return NULL;
    }
    int records = PyType_IsSubtype((PyTypeObject *)given[2],
                                   (PyTypeObject *)base);
    Py_DECREF(base);
    if (!records) {
        PyErr_SetString(PyExc_TypeError,
                        "configure_asgi() needs an ASGIRecordBase subclass");
        return NULL;
    }
    static const int names[4] = {NAME_RECORDING, NAME_ASGI_UNKNOWN,
                                 NAME_ASGI_RECORD_CLASS, NAME_ASGI_AWAITING};
    for (int i = 0; i < 4; i++) {
        Py_INCREF(given[i]);
        Py_XSETREF(state->record_names[names[i]], given[i]);
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------
 * The compiled base of sprockets_influxdb.tornado's _Record (a request's
 * record and the handler's last output transform), and tornado_begin,
 * the compiled _begin_py.  The transforms count the body and record the
 * request at its last byte; the recording itself is done in C for a
 * handler class whose URL pattern and name the application's state
 * already keeps, and left to the handler's _influxdb_finish otherwise.
 * ------------------------------------------------------------------------
 */

typedef struct {
    RecordObject record;
    PyObject *handler;
    PyObject *declared;
    long long body_bytes;
    char head;
} TornadoRecordObject;

/* The application's state of what the mixin keeps, the record's class
 * and _begin_py (configure_tornado()). */

/* The length of obj.rules: -1 (an error set) when there is none. */
static Py_ssize_t
rules_length(State *state, PyObject *router)
{
    PyObject *rules = PyObject_GetAttr(router,
                                       state->record_names[NAME_RULES_ATTR]);
    if (rules == NULL) {
        return -1;
    }
    Py_ssize_t length = PyObject_Size(rules);
    Py_DECREF(rules);
    return length;
}

/* What the handler's _influxdb_finish(disconnected, status) does, in C
 * when the application's state keeps the handler class's pattern and
 * name: None, or NULL on an error.  *status* may be NULL (the handler's
 * get_status()). */
static PyObject *
tornado_finish(State *state, TornadoRecordObject *self, PyObject *handler,
               int disconnected, PyObject *status)
{
    if (self->record.finished) {
        Py_RETURN_NONE;
    }
    PyObject *application = NULL, *kept = NULL, *settings = NULL;
    PyObject *router = NULL, *fixed = NULL, *names = NULL, *error = NULL;
    PyObject *given = NULL, *length = NULL, *result = NULL;
    PyObject *entry = NULL, *name = NULL;
    int done = 0;
    Py_INCREF(handler);
    if (status == NULL) {
        given = PyObject_CallMethodNoArgs(handler,
                                          state->record_names[NAME_GET_STATUS]);
        if (given == NULL) {
            goto lookup_done;
        }
        status = given;
    }
    if (!PyLong_CheckExact(status)) {
        goto lookup_done;
    }
    int overflow;
    long code = PyLong_AsLongAndOverflow(status, &overflow);
    if (overflow || code == 405) {
        goto lookup_done;
    }
    application = PyObject_GetAttr(handler,
                                   state->record_names[NAME_APPLICATION]);
    if (application == NULL) {
        goto lookup_done;
    }
    kept = PyObject_GetAttr(application,
                            state->record_names[NAME_TORNADO_STATE]);
    settings = kept ? PyObject_GetAttr(application,
                                       state->record_names[NAME_SETTINGS])
                    : NULL;
    if (settings == NULL || !PyDict_CheckExact(settings)) {
        goto lookup_done;
    }
    PyObject *fallback = PyDict_GetItemWithError(
        settings, state->record_names[NAME_DEFAULT_HANDLER]);
    if (fallback == (PyObject *)Py_TYPE(handler) || PyErr_Occurred()) {
        goto lookup_done; /* reached by routing or as the fallback */
    }
    router = PyObject_GetAttr(application,
                              state->record_names[NAME_DEFAULT_ROUTER]);
    fixed = router ? PyObject_GetAttr(kept, state->record_names[NAME_FIXED])
                   : NULL;
    if (fixed == NULL || !PyDict_CheckExact(fixed)) {
        goto lookup_done;
    }
    entry = scope_get(fixed, (PyObject *)Py_TYPE(handler));
    if (entry == NULL || !PyTuple_CheckExact(entry)
        || PyTuple_GET_SIZE(entry) != 5
        || PyTuple_GET_ITEM(entry, 0) != router
        || !PyLong_CheckExact(PyTuple_GET_ITEM(entry, 1))
        || !PyLong_CheckExact(PyTuple_GET_ITEM(entry, 3))) {
        goto lookup_done;
    }
    Py_ssize_t count = rules_length(state, router);
    if (count < 0
        || count != PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 1))) {
        goto lookup_done;
    }
    PyObject *inner = PyTuple_GET_ITEM(entry, 2);
    if (inner != Py_None) {
        count = rules_length(state, inner);
        if (count < 0
            || count != PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 3))) {
            goto lookup_done;
        }
    }
    names = PyObject_GetAttr(kept, state->record_names[NAME_NAMES]);
    if (names == NULL || !PyDict_CheckExact(names)) {
        goto lookup_done;
    }
    name = scope_get(names, (PyObject *)Py_TYPE(handler));
    if (name == NULL) {
        goto lookup_done;
    }
    error = PyObject_GetAttr(handler, state->record_names[NAME_ERROR_ATTR]);
    if (error == NULL) {
        goto lookup_done;
    }
    PyObject *endpoint = PyTuple_GET_ITEM(entry, 4);
    int named = PyObject_IsTrue(endpoint);
    if (named < 0) {
        goto lookup_done;
    }
    length = PyLong_FromLongLong(self->body_bytes);
    if (length == NULL) {
        goto lookup_done;
    }
    PyObject *finish[7] = {
        status, named ? endpoint : state->record_names[NAME_UNMATCHED],
        name, length, error, disconnected ? Py_True : Py_False, Py_None};
    done = 1;
    result = record_finish_with(state, (PyObject *)self, finish);
lookup_done:
    if (!done && PyErr_Occurred()) {
        /* Python does it again, and reports what fails. */
        if (PyErr_ExceptionMatches(PyExc_Exception)) {
            PyErr_Clear();
        }
        else {
            done = 1;
        }
    }
    if (!done) {
        result = PyObject_CallMethod(
            handler, "_influxdb_finish", "OO",
            disconnected ? Py_True : Py_False,
            given != NULL || status == NULL ? Py_None : status);
    }
    Py_XDECREF(application);
    Py_XDECREF(kept);
    Py_XDECREF(settings);
    Py_XDECREF(router);
    Py_XDECREF(fixed);
    Py_XDECREF(names);
    Py_XDECREF(error);
    Py_XDECREF(given);
    Py_XDECREF(length);
    Py_XDECREF(entry);
    Py_XDECREF(name);
    Py_DECREF(handler);
    return result;
}

/* Count a chunk of body (none for HEAD): 0, or -1 on an error. */
static int
tornado_count(TornadoRecordObject *self, PyObject *chunk)
{
    if (self->head) {
        return 0;
    }
    Py_ssize_t size = PyObject_Size(chunk);
    if (size < 0) {
        return -1;
    }
    self->body_bytes += size;
    return 0;
}

/* Whether the body counted reached the Content-Length declared: 1, 0, or
 * -1 on an error. */
static int
tornado_reached(TornadoRecordObject *self)
{
    PyObject *declared = self->declared;
    if (declared == NULL || declared == Py_None) {
        return 0;
    }
    Py_INCREF(declared);
    PyObject *count = PyLong_FromLongLong(self->body_bytes);
    int reached = count == NULL
                      ? -1
                      : PyObject_RichCompareBool(count, declared, Py_GE);
    Py_XDECREF(count);
    Py_DECREF(declared);
    return reached;
}

/* The Content-Length of a response's headers, when it is digits: a new
 * reference to the int, Py_None, or NULL on an error. */
static PyObject *
declared_length(State *state, PyObject *headers)
{
    PyObject *value = NULL;
    PyObject *kind = state->record_names[NAME_HEADERS_CLASS];
    PyObject *table = NULL;
    if (kind != NULL && Py_TYPE(headers) == (PyTypeObject *)kind) {
        /* Tornado's own HTTPHeaders: what its get() reads, the dict of
         * the headers by their normalized names, without its three Python
         * frames. */
        table = PyObject_GetAttr(headers,
                                 state->record_names[NAME_DICT_ATTR]);
        if (table == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
                return NULL;
            }
            PyErr_Clear();
        }
        else if (!PyDict_CheckExact(table)) {
            Py_CLEAR(table);
        }
    }
    if (table != NULL) {
        value = PyDict_GetItemWithError(
            table, state->record_names[NAME_CONTENT_LENGTH_HEADER]);
        Py_XINCREF(value);
        Py_DECREF(table);
        if (value == NULL) {
            if (PyErr_Occurred()) {
                return NULL;
            }
            Py_RETURN_NONE;
        }
    }
    else {
        value = PyObject_CallMethodOneArg(
            headers, state->record_names[NAME_GET_METHOD],
            state->record_names[NAME_CONTENT_LENGTH_HEADER]);
    }
    if (value == NULL || value == Py_None) {
        return value;
    }
    int digits;
    if (PyUnicode_CheckExact(value) && PyUnicode_IS_ASCII(value)) {
        Py_ssize_t size = PyUnicode_GET_LENGTH(value);
        const Py_UCS1 *text = PyUnicode_1BYTE_DATA(value);
        digits = size > 0;
        for (Py_ssize_t i = 0; i < size && digits; i++) {
            digits = text[i] >= '0' && text[i] <= '9';
        }
    }
    else { /* value.isdigit(), as Python asks it */
        PyObject *answer = PyObject_CallMethod(value, "isdigit", NULL);
        digits = answer == NULL ? -1 : PyObject_IsTrue(answer);
        Py_XDECREF(answer);
    }
    if (digits <= 0) {
        Py_DECREF(value);
        if (digits < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *number = PyNumber_Long(value);
    Py_DECREF(value);
    return number;
}

/* transform_first_chunk(status_code, headers, chunk, finishing) */
static PyObject *
tornado_first_chunk(PyObject *op, PyTypeObject *cls, PyObject *const *args,
                    Py_ssize_t nargs, PyObject *kwnames)
{
    State *state = PyType_GetModuleState(cls);
    if (state == NULL) {
        return NULL;
    }
    if (nargs != 4 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "transform_first_chunk() takes status_code, "
                        "headers, chunk and finishing");
        return NULL;
    }
    TornadoRecordObject *self = (TornadoRecordObject *)op;
    if (tornado_count(self, args[2]) < 0) {
        return NULL;
    }
    PyObject *handler = self->handler;
    if (handler != NULL && handler != Py_None) {
        int finishing = PyObject_IsTrue(args[3]);
        if (finishing < 0) {
            return NULL;
        }
        PyObject *done = NULL;
        if (finishing) {
            done = tornado_finish(state, self, handler, 0, args[0]);
        }
        else {
            PyObject *declared = declared_length(state, args[1]);
            if (declared == NULL) {
                return NULL;
            }
            if (declared == Py_None) {
                Py_DECREF(declared);
                done = Py_None;
                Py_INCREF(done);
            }
            else {
                Py_XSETREF(self->declared, declared);
                int reached = tornado_reached(self);
                if (reached < 0) {
                    return NULL;
                }
                if (reached && self->handler != NULL
                    && self->handler != Py_None) {
                    done = tornado_finish(state, self, self->handler, 0,
                                          args[0]);
                }
                else {
                    done = Py_None;
                    Py_INCREF(done);
                }
            }
        }
        if (done == NULL) {
            return NULL;
        }
        Py_DECREF(done);
    }
    return PyTuple_Pack(3, args[0], args[1], args[2]);
}

/* transform_chunk(chunk, finishing) */
static PyObject *
tornado_chunk(PyObject *op, PyTypeObject *cls, PyObject *const *args,
              Py_ssize_t nargs, PyObject *kwnames)
{
    State *state = PyType_GetModuleState(cls);
    if (state == NULL) {
        return NULL;
    }
    if (nargs != 2 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "transform_chunk() takes chunk and finishing");
        return NULL;
    }
    TornadoRecordObject *self = (TornadoRecordObject *)op;
    if (tornado_count(self, args[0]) < 0) {
        return NULL;
    }
    PyObject *handler = self->handler;
    if (handler != NULL && handler != Py_None) {
        int last = PyObject_IsTrue(args[1]);
        if (last == 0) {
            last = tornado_reached(self);
        }
        if (last < 0) {
            return NULL;
        }
        if (last && self->handler != NULL && self->handler != Py_None) {
            PyObject *done = tornado_finish(state, self, self->handler, 0,
                                            NULL);
            if (done == NULL) {
                return NULL;
            }
            Py_DECREF(done);
        }
    }
    Py_INCREF(args[0]);
    return args[0];
}

static int
tornado_traverse(PyObject *op, visitproc visit, void *arg)
{
    TornadoRecordObject *self = (TornadoRecordObject *)op;
    Py_VISIT(self->handler);
    Py_VISIT(self->declared);
    return record_traverse(op, visit, arg);
}

static int
tornado_clear(PyObject *op)
{
    TornadoRecordObject *self = (TornadoRecordObject *)op;
    Py_CLEAR(self->handler);
    Py_CLEAR(self->declared);
    return record_clear(op);
}

static void
tornado_dealloc(PyObject *op)
{
    record_dealloc_with(op, tornado_clear);
}

static PyMethodDef tornado_methods[] = {
    {"transform_first_chunk",
     (PyCFunction)(void (*)(void))tornado_first_chunk, METHOD_FLAGS,
     "transform_first_chunk($self, status_code, headers, chunk, "
     "finishing, /)\n--\n\n"
     "Count the first chunk; record the request if it is the last."},
    {"transform_chunk", (PyCFunction)(void (*)(void))tornado_chunk,
     METHOD_FLAGS,
     "transform_chunk($self, chunk, finishing, /)\n--\n\n"
     "Count a chunk; record the request if it is the last."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef tornado_members[] = {
    {"handler", T_OBJECT, offsetof(TornadoRecordObject, handler), 0, NULL},
    {"declared", T_OBJECT, offsetof(TornadoRecordObject, declared), 0,
     NULL},
    {"body_bytes", T_LONGLONG, offsetof(TornadoRecordObject, body_bytes), 0,
     NULL},
    {"head", T_BOOL, offsetof(TornadoRecordObject, head), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot tornado_slots[] = {
    {Py_tp_doc, "The compiled base of the Tornado mixin's record."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, tornado_dealloc},
    {Py_tp_finalize, record_finalize},
    {Py_tp_traverse, tornado_traverse},
    {Py_tp_clear, tornado_clear},
    {Py_tp_methods, tornado_methods},
    {Py_tp_members, tornado_members},
    {0, NULL},
};

static PyType_Spec tornado_spec = {
    "sprockets_influxdb._speedups.TornadoRecordBase",
    sizeof(TornadoRecordObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    tornado_slots,
};

/* request.request_time() of a Tornado request: what the method computes
 * (time.time() less its _start_time, while its _finish_time is None),
 * without a Python frame; the method itself for anything else.  NaN with
 * an error set when it raises, or when it returns something else than a
 * float.  When it read _start_time, *arrival is that time on the clock's
 * lattice (clock_align_seconds); else it is left as it is. */
static double
request_age(State *state, PyObject *request, long long *arrival)
{
    PyObject *start = PyObject_GetAttr(request,
                                       state->record_names[NAME_START_TIME]);
    PyObject *finish = start ? PyObject_GetAttr(
                                   request,
                                   state->record_names[NAME_FINISH_TIME])
                             : NULL;
    double age = NAN;
    struct timespec now;
    if (finish == Py_None && PyFloat_CheckExact(start)
        && clock_gettime(CLOCK_REALTIME, &now) == 0) {
        /* As time.time() converts the system clock's nanoseconds. */
        double seconds = (double)((long long)now.tv_sec * 1000000000LL
                                  + (long long)now.tv_nsec)
                         / 1e9;
        age = seconds - PyFloat_AS_DOUBLE(start);
        *arrival = clock_align_seconds(state, PyFloat_AS_DOUBLE(start));
    }
    else {
        if (PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_Exception)) {
                Py_XDECREF(start);
                return NAN; /* (KeyboardInterrupt, say) raised as it is */
            }
            PyErr_Clear(); /* no such attributes: the method, as Python */
        }
        PyObject *result = PyObject_CallMethodNoArgs(
            request, state->record_names[NAME_REQUEST_TIME]);
        if (result != NULL && PyFloat_CheckExact(result)) {
            age = PyFloat_AS_DOUBLE(result);
        }
        Py_XDECREF(result);
    }
    Py_XDECREF(start);
    Py_XDECREF(finish);
    return age;
}

/* tornado_begin(handler): the compiled _begin_py.  Begins recording the
 * handler's request, once, and returns its measurement, or None when it
 * began it without making one (the record makes it when asked); _begin_py
 * for anything but a handler of an application with a recorder excluding
 * no path, not begun yet. */
static PyObject *
begin_request(PyObject *module, PyObject *handler, int was);

static PyObject *
tornado_begin(PyObject *module, PyObject *handler)
{
    State *state = get_state(module);
    PyObject *begun = PyObject_GetAttr(handler,
                                       state->record_names[NAME_BEGUN]);
    int was = begun == NULL ? -1 : PyObject_IsTrue(begun);
    Py_XDECREF(begun);
    return begin_request(module, handler, was);
}

/* tornado_begin() once the handler's _influxdb_begun was read: *was* is
 * its truth, or -1 when reading it raised (the error is set). */
static PyObject *
begin_request(PyObject *module, PyObject *handler, int was)
{
    State *state = get_state(module);
    PyTypeObject *type
        = (PyTypeObject *)state->record_names[NAME_TORNADO_RECORD_CLASS];
    PyObject *begin_py = state->record_names[NAME_BEGIN_TORNADO_PY];
    if (type == NULL || begin_py == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "configure_tornado() was not called");
        return NULL;
    }
    PyObject *application = NULL, *request = NULL, *kept = NULL;
    PyObject *recorder = NULL, *method = NULL;
    PyObject *record = NULL;
    PyObject *given = NULL;
    int fast = 0;
    if (was != 0) {
        goto checked;
    }
    application = PyObject_GetAttr(handler,
                                   state->record_names[NAME_APPLICATION]);
    request = application ? PyObject_GetAttr(
                                handler, state->record_names[NAME_REQUEST])
                          : NULL;
    kept = request ? PyObject_GetAttr(application,
                                      state->record_names[NAME_TORNADO_STATE])
                   : NULL;
    recorder = kept ? PyObject_GetAttr(kept,
                                       state->record_names[NAME_RECORDER])
                    : NULL;
    if (recorder == NULL || recorder == Py_None) {
        goto checked;
    }
    PyObject *excluded = recorder_get(state, recorder, RECORDER_EXCLUDED);
    int excluding = excluded == NULL ? -1 : PyObject_IsTrue(excluded);
    Py_XDECREF(excluded);
    if (excluding != 0) {
        goto checked;
    }
    method = PyObject_GetAttr(request, state->record_names[NAME_METHOD_KEY]);
    int truth = method == NULL ? -1 : PyObject_IsTrue(method);
    if (truth < 0) {
        goto checked;
    }
    if (!truth) {
        Py_SETREF(method, state->record_names[NAME_GET]);
        Py_INCREF(method);
    }
    long long arrival = 0;
    double ago = request_age(state, request, &arrival);
    fast = isfinite(ago) && fabs(ago) < 1e9;
checked:
    if (!fast) {
        if (PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_Exception)) {
                goto done;
            }
            PyErr_Clear(); /* Python does it again, and raises */
        }
        given = PyObject_CallOneArg(begin_py, handler);
        goto done;
    }
    record = new_record(state, type, recorder, method, 0);
    if (record == NULL) {
        goto done;
    }
    TornadoRecordObject *self = (TornadoRecordObject *)record;
    /* Dated back to the request's arrival.  No measurement yet: the
     * record's measurement attribute makes it when a handler asks for it
     * (handler.influxdb), else the request is queued without one
     * (record_fast), dated from the same start. */
    double started = PyFloat_AS_DOUBLE(self->record.started) - ago;
    /* The point's time: the arrival Tornado timed, as it is.  Dating the
     * clock's time back by the age would add the time between the clock
     * readings, as long as a preemption or a collection: enough to land
     * on another request's time and replace its point. */
    self->record.arrival = arrival;
    Py_SETREF(self->record.started, PyFloat_FromDouble(started));
    if (self->record.started == NULL) {
        goto failed;
    }
    Py_INCREF(handler);
    self->handler = handler;
    int head = PyObject_RichCompareBool(
        method, state->record_names[NAME_HEAD_METHOD], Py_EQ);
    if (head < 0) {
        goto failed;
    }
    self->head = (char)head;
    self->body_bytes = 0;
    Py_INCREF(Py_None);
    self->declared = Py_None;
    if (PyObject_SetAttr(handler, state->record_names[NAME_BEGUN], Py_True)
            < 0
        || PyObject_SetAttr(handler, state->record_names[NAME_RECORD_ATTR],
                            record) < 0) {
        goto failed;
    }
    /* None: begun, its measurement not made (see _influxdb_begin). */
    Py_INCREF(Py_None);
    given = Py_None;
    goto done;
failed:
    self->record.finished = 1; /* nothing to record when released */
done:
    Py_XDECREF(application);
    Py_XDECREF(request);
    Py_XDECREF(kept);
    Py_XDECREF(recorder);
    Py_XDECREF(method);
    Py_XDECREF(record);
    return given;
}

/* ------------------------------------------------------------------------
 * The compiled base of the Tornado mixin: its _execute and on_finish,
 * without a Python frame, a super() object nor the packing of the
 * arguments each costs a request (sprockets_influxdb.tornado has them in
 * Python too, for the pure Python mode).
 * ------------------------------------------------------------------------
 */

/* The attribute *name* of the class after *base* in the method resolution
 * order of *self*'s class, as super(base, self).name finds it: a new
 * reference in *found*; 0, or -1 with an error set (AttributeError when
 * none has it). */
static int
after_in_mro(PyObject *self, PyTypeObject *base, PyObject *name,
             PyObject **found)
{
    PyObject *mro = Py_TYPE(self)->tp_mro;
    if (mro == NULL || !PyTuple_Check(mro)) {
        PyErr_SetString(PyExc_TypeError, "the class has no __mro__ yet");
        return -1;
    }
    /* Held: a lookup may run code that changes the class's bases. */
    Py_INCREF(mro);
    Py_ssize_t count = PyTuple_GET_SIZE(mro);
    Py_ssize_t index = 0;
    while (index < count && PyTuple_GET_ITEM(mro, index) != (PyObject *)base) {
        index++;
    }
    for (index++; index < count; index++) {
        PyTypeObject *type = (PyTypeObject *)PyTuple_GET_ITEM(mro, index);
#if PY_VERSION_HEX >= 0x030C0000
        PyObject *namespace = PyType_GetDict(type); /* (static types too) */
#else
        PyObject *namespace = type->tp_dict;
        Py_XINCREF(namespace);
#endif
        if (namespace == NULL || !PyDict_Check(namespace)) {
            Py_XDECREF(namespace);
            continue;
        }
        PyObject *value = PyDict_GetItemWithError(namespace, name);
        if (value != NULL) {
            /* (Held by the caller before anything else runs.) */
            Py_INCREF(value);
            Py_DECREF(namespace);
            Py_DECREF(mro);
            *found = value;
            return 0;
        }
        Py_DECREF(namespace);
        if (PyErr_Occurred()) {
            Py_DECREF(mro);
            return -1;
        }
    }
    Py_DECREF(mro);
    PyErr_Format(PyExc_AttributeError, "'super' object has no attribute %R",
                 name);
    return -1;
}

/* super(base, self).name(*args, **kwargs) with vectorcall arguments (args
 * without self): the result, or NULL with an error set. */
static PyObject *
call_after(PyObject *self, PyTypeObject *base, PyObject *name,
           PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *found;
    if (after_in_mro(self, base, name, &found) < 0) {
        return NULL;
    }
    PyObject *result;
    if (PyFunction_Check(found)) {
        /* A function (Tornado's own): called with self first, as the bound
         * method would be, without making it. */
        Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
        PyObject *small[9];
        PyObject **stack = small;
        if (total + 1 > (Py_ssize_t)(sizeof(small) / sizeof(small[0]))) {
            stack = PyMem_Malloc((size_t)(total + 1) * sizeof(PyObject *));
            if (stack == NULL) {
                Py_DECREF(found);
                return PyErr_NoMemory();
            }
        }
        stack[0] = self;
        for (Py_ssize_t i = 0; i < total; i++) {
            stack[i + 1] = args[i];
        }
        result = PyObject_Vectorcall(found, stack, nargs + 1, kwnames);
        if (stack != small) {
            PyMem_Free(stack);
        }
    }
    else {
        /* Anything else: bound as attribute lookup binds it. */
        descrgetfunc get = Py_TYPE(found)->tp_descr_get;
        PyObject *bound = found;
        if (get != NULL) {
            bound = get(found, self, (PyObject *)Py_TYPE(self));
            Py_DECREF(found);
            if (bound == NULL) {
                return NULL;
            }
        }
        result = PyObject_Vectorcall(bound, args, nargs, kwnames);
        found = bound;
    }
    Py_DECREF(found);
    return result;
}

/* InfluxDBMixin._execute(transforms, *args, **kwargs): begin recording the
 * request (once), add its record to the output transforms, then Tornado's
 * _execute. */
static PyObject *
mixin_execute(PyObject *self, PyTypeObject *cls, PyObject *const *args,
              Py_ssize_t nargs, PyObject *kwnames)
{
    State *state = PyType_GetModuleState(cls);
    PyObject *module = PyType_GetModule(cls);
    if (state == NULL || module == NULL) {
        return NULL;
    }
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError,
                        "_execute() takes the output transforms first");
        return NULL;
    }
    PyObject *begun = PyObject_GetAttr(self, state->record_names[NAME_BEGUN]);
    int was = begun == NULL ? -1 : PyObject_IsTrue(begun);
    Py_XDECREF(begun);
    if (was < 0) {
        return NULL;
    }
    if (!was) {
        PyObject *given = begin_request(module, self, was);
        if (given == NULL) {
            return NULL;
        }
        Py_DECREF(given);
    }
    PyObject *record = PyObject_GetAttr(self,
                                        state->record_names[NAME_RECORD_ATTR]);
    if (record == NULL) {
        return NULL;
    }
    if (record != Py_None) {
        /* The record is the last of the output transforms. */
        PyObject *transforms = args[0];
        int added;
        if (PyList_CheckExact(transforms)) {
            added = PyList_Append(transforms, record);
        }
        else {
            PyObject *done = PyObject_CallMethod(transforms, "append", "O",
                                                 record);
            added = done == NULL ? -1 : 0;
            Py_XDECREF(done);
        }
        if (added < 0) {
            Py_DECREF(record);
            return NULL;
        }
    }
    Py_DECREF(record);
    return call_after(self, cls, state->record_names[NAME_EXECUTE], args,
                      nargs, kwnames);
}

/* InfluxDBMixin.on_finish(): record the request if the output transform
 * has not, let the handler go, then any on_finish further down. */
static PyObject *
mixin_on_finish(PyObject *self, PyTypeObject *cls, PyObject *const *args,
                Py_ssize_t nargs, PyObject *kwnames)
{
    State *state = PyType_GetModuleState(cls);
    if (state == NULL) {
        return NULL;
    }
    if (nargs != 0 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "on_finish() takes no arguments");
        return NULL;
    }
    PyObject *record = PyObject_GetAttr(self,
                                        state->record_names[NAME_RECORD_ATTR]);
    if (record == NULL) {
        return NULL;
    }
    if (record != Py_None) {
        PyTypeObject *own
            = (PyTypeObject *)state->record_names[NAME_TORNADO_RECORD_CLASS];
        /* The mixin's own records: their fields, as the members read them
         * (no subclass could have replaced them with properties). */
        int ours = own != NULL && Py_TYPE(record) == own;
        int finished;
        if (ours) {
            finished = ((RecordObject *)record)->finished;
        }
        else {
            PyObject *flag = PyObject_GetAttrString(record, "finished");
            finished = flag == NULL ? -1 : PyObject_IsTrue(flag);
            Py_XDECREF(flag);
        }
        if (finished < 0) {
            Py_DECREF(record);
            return NULL;
        }
        if (!finished) {
            PyObject *done = PyObject_CallMethodObjArgs(
                self, state->record_names[NAME_INFLUXDB_FINISH], Py_False,
                NULL);
            if (done == NULL) {
                Py_DECREF(record);
                return NULL;
            }
            Py_DECREF(done);
        }
        /* Nothing is written after finish(): break the cycle between the
         * handler and its transform, so that reference counting frees the
         * handler (Tornado breaks its own cycles likewise). */
        if (ours) {
            Py_INCREF(Py_None);
            Py_XSETREF(((TornadoRecordObject *)record)->handler, Py_None);
        }
        else if (PyObject_SetAttrString(record, "handler", Py_None) < 0) {
            Py_DECREF(record);
            return NULL;
        }
    }
    Py_DECREF(record);
    return call_after(self, cls, state->record_names[NAME_ON_FINISH], NULL, 0,
                      NULL);
}

static PyMethodDef mixin_methods[] = {
    {"_execute", (PyCFunction)(void (*)(void))mixin_execute, METHOD_FLAGS,
     "_execute($self, transforms, /, *args, **kwargs)\n--\n\n"
     "Begin recording the request, then handle it."},
    {"on_finish", (PyCFunction)(void (*)(void))mixin_on_finish, METHOD_FLAGS,
     "on_finish($self, /)\n--\n\n"
     "Record the request, then run any ``on_finish`` further down.\n\n"
     "The output transform has usually recorded it already."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot mixin_slots[] = {
    {Py_tp_doc, "The compiled base of the Tornado mixin."},
    {Py_tp_methods, mixin_methods},
    {0, NULL},
};

static PyType_Spec mixin_spec = {
    "sprockets_influxdb._speedups.TornadoMixinBase",
    0,
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    mixin_slots,
};

/* configure_tornado(state_name, record_class, begin_py[, headers_class]):
 * the attribute of an application that holds the mixin's state, the class
 * of the mixin's records (a subclass of TornadoRecordBase), _begin_py,
 * and Tornado's HTTPHeaders (its Content-Length read from its dict). */
static PyObject *
configure_tornado(PyObject *module, PyObject *args)
{
    PyObject *given[4] = {NULL, NULL, NULL, NULL};
    if (!PyArg_ParseTuple(args, "UO!O|O!", &given[0], &PyType_Type,
                          &given[1], &given[2], &PyType_Type, &given[3])) {
        return NULL;
    }
    State *state = get_state(module);
    PyObject *base = PyObject_GetAttrString(module, "TornadoRecordBase");
    if (base == NULL) {
        return NULL;
    }
    int records = PyType_IsSubtype((PyTypeObject *)given[1],
                                   (PyTypeObject *)base);
    Py_DECREF(base);
    if (!records || !PyCallable_Check(given[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "configure_tornado() needs a TornadoRecordBase "
                        "subclass and a function");
        return NULL;
    }
    static const int names[4] = {NAME_TORNADO_STATE,
                                 NAME_TORNADO_RECORD_CLASS,
                                 NAME_BEGIN_TORNADO_PY, NAME_HEADERS_CLASS};
    for (int i = 0; i < 4; i++) {
        Py_XINCREF(given[i]);
        Py_XSETREF(state->record_names[names[i]], given[i]);
    }
    Py_RETURN_NONE;
}

#endif

static PyObject *
configure(PyObject *module, PyObject *args)
{
    PyObject *prefixes, *names, *keys;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "O!O!O!n", &PyDict_Type, &prefixes,
                          &PyDict_Type, &names, &PyDict_Type, &keys,
                          &limit)) {
        return NULL;
    }
    State *state = get_state(module);
    Py_INCREF(prefixes);
    Py_XSETREF(state->prefix_cache, prefixes);
    Py_INCREF(names);
    Py_XSETREF(state->measurement_cache, names);
    Py_INCREF(keys);
    Py_XSETREF(state->field_key_cache, keys);
    state->series_limit = limit;
    Py_RETURN_NONE;
}

/* join_lines(lines) -> bytes | None
 *
 * '\n'.join(lines).encode('utf-8') for a list of ASCII str, written once
 * into the bytes object (the body of a request: a megabyte for 10,000
 * lines, one copy and one allocation fewer); None when a line is not an
 * ASCII str, for Python to do it. */
static PyObject *
join_lines(PyObject *module, PyObject *lines)
{
    (void)module;
    if (!PyList_CheckExact(lines)) {
        PyErr_SetString(PyExc_TypeError, "join_lines() needs a list");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(lines);
    Py_ssize_t size = count > 0 ? count - 1 : 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        if (!PyUnicode_CheckExact(line) || !PyUnicode_IS_ASCII(line)) {
            Py_RETURN_NONE;
        }
        size += PyUnicode_GET_LENGTH(line);
    }
    PyObject *body = PyBytes_FromStringAndSize(NULL, size);
    if (body == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(body);
    /* No Python code runs above: the list is as measured. */
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        Py_ssize_t length = PyUnicode_GET_LENGTH(line);
        if (i > 0) {
            *out++ = '\n';
        }
        memcpy(out, PyUnicode_1BYTE_DATA(line), (size_t)length);
        out += length;
    }
    return body;
}

#if defined(SA_RESTART)
/* Whether the handler of a signal restarts the system calls it interrupts
 * (what signal.siginterrupt(signum, False) sets, and signal.signal()
 * clears): read so that a handler replaced keeps the host's choice. */
static PyObject *
signal_restarts(PyObject *module, PyObject *arg)
{
    (void)module;
    int overflow = 0;
    long signum = PyLong_AsLongAndOverflow(arg, &overflow);
    if (signum == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (overflow != 0 || signum < 1 || signum > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "signal number out of range: %R",
                     arg);
        return NULL;
    }
    struct sigaction current;
    if (sigaction((int)signum, NULL, &current) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyBool_FromLong((current.sa_flags & SA_RESTART) != 0);
}
#endif

static PyMethodDef methods[] = {
    {"encode", (PyCFunction)(void (*)(void))encode, METH_FASTCALL,
     "encode(name, tags, fields, timestamp, precision, last) -> str | None"},
    {"encode_slice", (PyCFunction)(void (*)(void))encode_slice,
     METH_FASTCALL,
     "encode_slice(values, start, stop, precision, base_tags, outputs) -> "
     "int"},
    {"join_lines", join_lines, METH_O,
     "join_lines(lines) -> bytes | None: the body of lines, None when one "
     "is not an ASCII str"},
#if defined(SA_RESTART)
    {"signal_restarts", signal_restarts, METH_O,
     "signal_restarts(signum) -> bool: whether the signal's handler "
     "restarts the system calls it interrupts"},
#endif
    {"float_repr", float_repr, METH_O,
     "float_repr(x) -> str | None: repr(x) by the fast path, None outside "
     "its range"},
#if defined(CLOCK_REALTIME)
    {"configure_measurement", configure_measurement, METH_VARARGS,
     "configure_measurement(tag_pair_cache, init, set_tag, set_field, "
     "set_timestamp): what the compiled Measurement leaves to Python"},
    {"configure_buffer", configure_buffer, METH_O,
     "configure_buffer(monotonic): the clock of Buffer.since"},
    {"configure_default_tags", configure_default_tags, METH_O,
     "configure_default_tags(tags): the tags new measurements start with, "
     "or None"},
    {"configure_requests", configure_requests, METH_VARARGS,
     "configure_requests(unmatched, other_method, measurement_class): "
     "what the compiled records of requests use"},
    {"configure_wsgi", configure_wsgi, METH_VARARGS,
     "configure_wsgi(unknown, error_key, request_key, environ_key, "
     "record_class): what the WSGI middleware and its record use"},
    {"configure_tornado", configure_tornado, METH_VARARGS,
     "configure_tornado(state_name, record_class, begin_py, "
     "headers_class=None): what the Tornado mixin and its record use"},
    {"tornado_begin", tornado_begin, METH_O,
     "tornado_begin(handler) -> Measurement | None: the compiled "
     "_begin_py (None: begun without its measurement)"},
    {"configure_asgi", configure_asgi, METH_VARARGS,
     "configure_asgi(recording, unknown, record_class): what the ASGI "
     "middleware and its record use"},
#endif
    {"configure", configure, METH_VARARGS,
     "configure(prefix_cache, measurement_cache, field_key_cache, "
     "series_limit)"},
#if defined(CLOCK_REALTIME)
    {"now_ns", now_ns, METH_NOARGS,
     "now_ns($module, /)\n--\n\n"
     "Return a time for a new point, in nanoseconds since the epoch.\n\n"
     "Never after the moment of the call and less than a microsecond\n"
     "before it, ending in this process's discriminator, and later than\n"
     "any time returned before in this process and not given back.\n\n"
     ":returns: the time"},
    {"configure_add", (PyCFunction)(void (*)(void))configure_add,
     METH_FASTCALL,
     "configure_add(client_add, module_add): Client.add_measurement, which "
     "fast_add stands for, and the module's add_measurement"},
    {"fast_add", (PyCFunction)(void (*)(void))fast_add, METH_FASTCALL,
     "fast_add($module, client, measurement, /)\n--\n\n"
     "client.add_measurement(measurement) for a plain, open client and a\n"
     "compiled measurement with fields: whether it was done."},
    {"give_back", clock_give_back, METH_O,
     "give_back($module, moment, /)\n--\n\n"
     "Take back a time now_ns() returned, if it was the last one."},
    {"configure_clock", configure_clock, METH_VARARGS,
     "configure_clock(offset, resolution): the discriminator and the "
     "clock's resolution in ns; forgets the last time"},
#endif
    {NULL, NULL, 0, NULL},
};

static int
exec_module(PyObject *module)
{
    State *state = get_state(module);
    state->prefix_cache = NULL;
    state->measurement_cache = NULL;
    state->field_key_cache = NULL;
    state->series_limit = 100000;
    state->clock_offset = 0;
    state->clock_resolution = 1;
    state->clock_last = 0;
    state->tag_pair_cache = NULL;
    state->default_tags = NULL;
    state->py_init = NULL;
    state->py_set_tag = NULL;
    state->py_set_field = NULL;
    state->py_set_timestamp = NULL;
    state->measurement_type = NULL;
    state->monotonic = NULL;
    state->str_acquire = PyUnicode_InternFromString("acquire");
    state->str_release = PyUnicode_InternFromString("release");
    state->str_extend = PyUnicode_InternFromString("extend");
    state->str_popleft = PyUnicode_InternFromString("popleft");
    state->str_backlog = PyUnicode_InternFromString("backlog");
    if (!state->str_acquire || !state->str_release || !state->str_extend
        || !state->str_popleft || !state->str_backlog) {
        return -1;
    }
    state->buffer_type = NULL;
    state->lock_type = NULL;
    state->sending_type = NULL;
    state->recorder_type = NULL;
    for (int i = 0; i < NAME_COUNT; i++) {
        state->record_names[i] = NULL;
        if (RECORD_NAMES[i] != NULL) {
            state->record_names[i] = PyUnicode_InternFromString(
                RECORD_NAMES[i]);
            if (state->record_names[i] == NULL) {
                return -1;
            }
        }
    }
#if defined(CLOCK_REALTIME)
    /* The compiled Measurement reads the compiled clock. */
    PyObject *type = PyType_FromModuleAndSpec(module, &measurement_spec,
                                              NULL);
    if (type == NULL) {
        return -1;
    }
    state->measurement_type = type;
    Py_INCREF(type);
    if (PyModule_AddObject(module, "MeasurementBase", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    PyObject *buffer = PyType_FromModuleAndSpec(module, &buffer_spec, NULL);
    if (buffer == NULL) {
        return -1;
    }
    state->buffer_type = buffer;
    Py_INCREF(buffer);
    if (PyModule_AddObject(module, "BufferBase", buffer) < 0) {
        Py_DECREF(buffer);
        return -1;
    }
    PyObject *lock = PyType_FromModuleAndSpec(module, &buffer_lock_spec,
                                              NULL);
    if (lock == NULL) {
        return -1;
    }
    state->lock_type = lock;
    Py_INCREF(lock);
    if (PyModule_AddObject(module, "BufferLock", lock) < 0) {
        Py_DECREF(lock);
        return -1;
    }
    PyObject *recorder = PyType_FromModuleAndSpec(module, &recorder_spec,
                                                  NULL);
    if (recorder == NULL) {
        return -1;
    }
    state->recorder_type = recorder;
    Py_INCREF(recorder);
    if (PyModule_AddObject(module, "RecorderBase", recorder) < 0) {
        Py_DECREF(recorder);
        return -1;
    }
    PyObject *record = PyType_FromModuleAndSpec(module, &record_spec, NULL);
    if (record == NULL) {
        return -1;
    }
    PyObject *wsgi = PyType_FromModuleAndSpec(module, &wsgi_spec, record);
    if (PyModule_AddObject(module, "RequestRecordBase", record) < 0) {
        Py_DECREF(record);
        Py_XDECREF(wsgi);
        return -1;
    }
    if (wsgi == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, "WSGIRecordBase", wsgi) < 0) {
        Py_DECREF(wsgi);
        return -1;
    }
    PyObject *middleware = PyType_FromModuleAndSpec(module, &middleware_spec,
                                                    NULL);
    if (middleware == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, "WSGIMiddlewareBase", middleware) < 0) {
        Py_DECREF(middleware);
        return -1;
    }
    record = PyObject_GetAttrString(module, "RequestRecordBase");
    if (record == NULL) {
        return -1;
    }
    PyObject *asgi = PyType_FromModuleAndSpec(module, &asgi_spec, record);
    Py_DECREF(record);
    if (asgi == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, "ASGIRecordBase", asgi) < 0) {
        Py_DECREF(asgi);
        return -1;
    }
    PyObject *asgi_middleware = PyType_FromModuleAndSpec(
        module, &asgi_middleware_spec, NULL);
    if (asgi_middleware == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, "ASGIMiddlewareBase", asgi_middleware)
        < 0) {
        Py_DECREF(asgi_middleware);
        return -1;
    }
    record = PyObject_GetAttrString(module, "RequestRecordBase");
    if (record == NULL) {
        return -1;
    }
#if PY_VERSION_HEX >= 0x030A0000
    state->sending_type = PyType_FromModuleAndSpec(module, &sending_spec,
                                                   NULL);
    if (state->sending_type == NULL) {
        Py_DECREF(record);
        return -1;
    }
#endif
    PyObject *tornado = PyType_FromModuleAndSpec(module, &tornado_spec,
                                                 record);
    Py_DECREF(record);
    if (tornado == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, "TornadoRecordBase", tornado) < 0) {
        Py_DECREF(tornado);
        return -1;
    }
    PyObject *mixin = PyType_FromModuleAndSpec(module, &mixin_spec, NULL);
    if (mixin == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, "TornadoMixinBase", mixin) < 0) {
        Py_DECREF(mixin);
        return -1;
    }
#endif
    return 0;
}

static int
traverse_module(PyObject *module, visitproc visit, void *arg)
{
    State *state = get_state(module);
    Py_VISIT(state->prefix_cache);
    Py_VISIT(state->measurement_cache);
    Py_VISIT(state->field_key_cache);
    Py_VISIT(state->tag_pair_cache);
    Py_VISIT(state->default_tags);
    Py_VISIT(state->py_init);
    Py_VISIT(state->py_set_tag);
    Py_VISIT(state->py_set_field);
    Py_VISIT(state->py_set_timestamp);
    Py_VISIT(state->measurement_type);
    Py_VISIT(state->sending_type);
    Py_VISIT(state->monotonic);
    Py_VISIT(state->str_acquire);
    Py_VISIT(state->str_release);
    Py_VISIT(state->str_extend);
    Py_VISIT(state->str_popleft);
    Py_VISIT(state->str_backlog);
    Py_VISIT(state->buffer_type);
    Py_VISIT(state->lock_type);
    Py_VISIT(state->recorder_type);
    for (int i = 0; i < NAME_COUNT; i++) {
        Py_VISIT(state->record_names[i]);
    }
    return 0;
}

static int
clear_module(PyObject *module)
{
    State *state = get_state(module);
    Py_CLEAR(state->prefix_cache);
    Py_CLEAR(state->measurement_cache);
    Py_CLEAR(state->field_key_cache);
    Py_CLEAR(state->tag_pair_cache);
    Py_CLEAR(state->default_tags);
    Py_CLEAR(state->py_init);
    Py_CLEAR(state->py_set_tag);
    Py_CLEAR(state->py_set_field);
    Py_CLEAR(state->py_set_timestamp);
    Py_CLEAR(state->measurement_type);
    Py_CLEAR(state->sending_type);
    Py_CLEAR(state->monotonic);
    Py_CLEAR(state->str_acquire);
    Py_CLEAR(state->str_release);
    Py_CLEAR(state->str_extend);
    Py_CLEAR(state->str_popleft);
    Py_CLEAR(state->str_backlog);
    Py_CLEAR(state->buffer_type);
    Py_CLEAR(state->lock_type);
    Py_CLEAR(state->recorder_type);
    for (int i = 0; i < NAME_COUNT; i++) {
        Py_CLEAR(state->record_names[i]);
    }
    return 0;
}

static void
free_module(void *module)
{
    clear_module((PyObject *)module);
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT,
    "sprockets_influxdb._speedups",
    "The compiled fast path of the line protocol encoder.",
    sizeof(State),
    methods,
    slots,
    traverse_module,
    clear_module,
    free_module,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&module_definition);
}
