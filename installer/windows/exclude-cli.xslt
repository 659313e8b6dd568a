<?xml version="1.0" encoding="utf-8"?>
<!-- WiX heat transform (heat dir … -t exclude-cli.xslt): drop ps-agent.exe from the harvested files, since
     ps-agent.wxs declares it with the fixed id F.Cli (the deployment custom action runs it). -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
                xmlns:wix="http://schemas.microsoft.com/wix/2006/wi">
  <xsl:output method="xml" indent="yes" />
  <xsl:key name="cli" match="wix:Component[wix:File[substring(@Source, string-length(@Source) - 12) = '\ps-agent.exe']]" use="@Id" />
  <xsl:template match="@*|node()">
    <xsl:copy><xsl:apply-templates select="@*|node()" /></xsl:copy>
  </xsl:template>
  <xsl:template match="wix:Component[key('cli', @Id)]" />
  <xsl:template match="wix:ComponentRef[key('cli', @Id)]" />
</xsl:stylesheet>
