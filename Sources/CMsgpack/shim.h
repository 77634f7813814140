#pragma once
#include <msgpack.h>
