#pragma once
#include <numa.h>
#include <numaif.h>
