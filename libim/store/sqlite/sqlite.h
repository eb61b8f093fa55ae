/*
 * Private to libim and its tests: reach the sqlite3 handle behind a store
 * opened with im_store_sqlite_open(). The conformance suite uses it to put
 * the database into states the public API cannot (a newer schema version).
 */
#ifndef IM_STORE_SQLITE_PRIV_H
#define IM_STORE_SQLITE_PRIV_H

#include "im/store.h"

#include <sqlite3.h>

/* NULL when st is not a sqlite store. */
sqlite3 *im__store_sqlite_db(im_store *st);

#endif
