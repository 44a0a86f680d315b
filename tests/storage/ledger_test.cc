#include "storage/ledger.h"
#include <gtest/gtest.h>
