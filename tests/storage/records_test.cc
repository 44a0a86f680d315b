#include "storage/records.h"
#include <gtest/gtest.h>
