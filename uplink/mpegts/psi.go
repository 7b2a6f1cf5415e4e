package mpegts

// MPEG-2 CRC32 (ISO/IEC 13818-1 Annex A): polynomial 0x04C11DB7, initial
// value 0xFFFFFFFF, no bit reflection, no final XOR.

var crcTable = func() (t [256]uint32) {
	for i := range t {
		c := uint32(i) << 24
		for j := 0; j < 8; j++ {
			if c&0x80000000 != 0 {
				c = c<<1 ^ 0x04C11DB7
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// CRC32 returns the MPEG-2 CRC of b. Over a whole PSI section, its CRC
// included, the result is 0.
func CRC32(b []byte) uint32 {
	c := uint32(0xFFFFFFFF)
	for _, x := range b {
		c = c<<8 ^ crcTable[byte(c>>24)^x]
	}
	return c
}

// Stream types (ISO/IEC 13818-1 Table 2-34) used here.
const (
	StreamTypeMPEG1Audio = 0x03
	StreamTypeMPEG2Audio = 0x04
	StreamTypePrivate    = 0x06 // PES packets containing private data
	StreamTypeAACADTS    = 0x0F
	StreamTypeH264       = 0x1B
)

// Well-known PIDs.
const (
	PIDPAT  = 0x0000
	PIDNull = 0x1FFF
)

// PacketSize is the size of one TS packet; MaxMessage is seven of them,
// the payload of one SRT live-mode message.
const (
	PacketSize = 188
	MaxMessage = 7 * PacketSize
)

const syncByte = 0x47

// appendSectionHeader starts a long-form PSI section. The section_length
// is patched by finishSection.
func appendSectionHeader(b []byte, tableID byte, ext uint16, version byte) []byte {
	return append(b, tableID, 0xB0, 0, byte(ext>>8), byte(ext), 0xC1|version<<1&0x3E, 0, 0)
}

// finishSection patches the section_length of the section starting at
// b[start] and appends the CRC.
func finishSection(b []byte, start int) []byte {
	n := len(b) - start - 3 + 4
	b[start+1] = 0xB0 | byte(n>>8&0x0F)
	b[start+2] = byte(n)
	c := CRC32(b[start:])
	return append(b, byte(c>>24), byte(c>>16), byte(c>>8), byte(c))
}
