package iot

import (
	"math/rand/v2"
	"strconv"
	"time"
)

// Devices is the number of distinct device ids Generate uses: d-0 to d-63.
const Devices = 64

// MalformedKinds is the number of kinds of malformed readings Generate
// makes, in turn: truncated JSON, no device_id, no temperature, temperature
// "NaN" (a string), unit "X", an unparsable ts.
const MalformedKinds = 6

// generateEpoch is the ts of reading 0; reading i is i seconds later.
var generateEpoch = time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)

// IsMalformed reports whether Generate(_, i, malformedEvery) is malformed:
// the last reading of every run of malformedEvery (none if malformedEvery
// is 0 or less). malformedEvery=100 makes 1% of readings malformed.
func IsMalformed(i, malformedEvery int) bool {
	return malformedEvery > 0 && i%malformedEvery == malformedEvery-1
}

// Generate returns reading i of the sequence seeded by seed: a record key
// (the device id) and a JSON value. It is deterministic: the same seed and i
// give the same bytes, so a producer and a verifier can agree on what was
// sent without sharing state. Readings where IsMalformed(i, malformedEvery)
// are malformed, cycling through MalformedKinds kinds; all others pass
// Parse. Temperatures come in C, F and K; about 5% of batteries are low.
func Generate(seed int64, i int, malformedEvery int) (key, value []byte) {
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(i)))
	device := "d-" + strconv.Itoa(rng.IntN(Devices))
	key = []byte(device)

	celsius := 12 + rng.Float64()*24 // 12..36 °C: some readings get a heat index
	unit := [...]string{"C", "F", "K"}[rng.IntN(3)]
	temp := celsius
	switch unit {
	case "F":
		temp = celsius*9/5 + 32
	case "K":
		temp = celsius + 273.15
	}
	humidity := 20 + rng.Float64()*70
	battery := 3300 + rng.IntN(900)
	if rng.IntN(20) == 0 {
		battery = 3000 + rng.IntN(300)
	}
	ts := generateEpoch.Add(time.Duration(i) * time.Second).Format(time.RFC3339)

	kind := -1
	if IsMalformed(i, malformedEvery) {
		kind = (i / malformedEvery) % MalformedKinds
	}

	v := make([]byte, 0, 160)
	v = append(v, '{')
	if kind != 1 {
		v = append(v, `"device_id":"`...)
		v = append(v, device...)
		v = append(v, `",`...)
	}
	v = append(v, `"ts":"`...)
	if kind == 5 {
		v = append(v, "yesterday"...)
	} else {
		v = append(v, ts...)
	}
	v = append(v, '"')
	switch kind {
	case 2:
	case 3:
		v = append(v, `,"temperature":"NaN"`...)
	default:
		v = append(v, `,"temperature":`...)
		v = strconv.AppendFloat(v, temp, 'f', 2, 64)
	}
	v = append(v, `,"unit":"`...)
	if kind == 4 {
		v = append(v, 'X')
	} else {
		v = append(v, unit...)
	}
	v = append(v, `","humidity":`...)
	v = strconv.AppendFloat(v, humidity, 'f', 1, 64)
	v = append(v, `,"battery_mv":`...)
	v = strconv.AppendInt(v, int64(battery), 10)
	v = append(v, '}')
	if kind == 0 {
		v = v[:len(v)/2] // cut mid-object
	}
	return key, v
}
